// SPDX-License-Identifier: Apache-2.0

// Parent side: the read token, which says who receives from a worker's
// connection (the reader goroutine, or a caller waiting in Future.Get that
// receives its own result: a direct read).

package pool

import (
	"context"
	"sync/atomic"
)

// readToken says who receives from a worker's connection (under
// Pool.mu). The reader goroutine (readLoop) takes it when loopWanted: a
// frame was pushed that no caller waits on directly; it gives it back
// when the worker holds nothing. A lone Submit's chunk given to a worker
// whose token is free (and holds nothing else) does not want the loop:
// the caller's Future.Get takes the token and receives its result itself
// (a direct read), which saves the hand-off from the reader goroutine to
// the caller, a thread wake-up per task. Whoever gives up the token while
// something is left to receive hands it to the reader goroutine.
type readToken struct {
	holder     int // tokFree, tokLoop or tokDirect
	loopWanted bool
	wake       chan struct{} // capacity 1: wakes the reader goroutine
	fd         int           // conn's descriptor, polled by a direct reader's spin; -1 if unknown
	buf        []byte        // the holder's receive buffer
}

// Values of readToken.holder.
const (
	tokFree = iota
	tokLoop
	tokDirect
)

// wantLoopLocked asks the reader goroutine to receive from the worker,
// waking it if the token is free (else the holder hands it over when it
// is done). Called with Pool.mu held.
func (w *workerHandle) wantLoopLocked() {
	if w.tok.loopWanted {
		return
	}
	w.tok.loopWanted = true
	if w.tok.holder == tokFree {
		select {
		case w.tok.wake <- struct{}{}:
		default:
		}
	}
}

// releaseTokLocked gives back the read token, to the reader goroutine
// if anything is left to receive. Called with Pool.mu held.
func (w *workerHandle) releaseTokLocked() {
	w.tok.holder = tokFree
	if w.tok.loopWanted || len(w.held) > 0 || w.life == lifeStopping || w.kill != killNone || w.gone {
		w.tok.loopWanted = false
		w.wantLoopLocked()
	}
}

// undirectLocked makes the reader goroutine receive c's result: its
// caller will not (a callback, Done, or a wait that gave up reading).
// Called with Pool.mu held.
func (p *Pool) undirectLocked(c *chunk) {
	if !c.direct {
		return
	}
	c.direct = false
	if w := c.w; w != nil && w.held[c.seq] == c {
		w.wantLoopLocked()
	}
}

// waitDirect waits for the result of c, a lone Submit's chunk, by
// receiving from its worker itself while it may (see readToken), until
// fin is set. It returns ctx.Err() if ctx ends first, and nil when fin
// is set or reading directly is not possible (the caller then waits for
// the result the usual way). jctx is the job's context: when it ends,
// the job's end delivers the result.
func (p *Pool) waitDirect(ctx, jctx context.Context, c *chunk, fin *atomic.Bool) error {
	rctx := ctx
	switch {
	case ctx.Done() == nil:
		rctx = jctx
	case jctx.Done() != nil && jctx != ctx:
		// Two contexts to watch: not worth a merged one.
		p.mu.Lock()
		p.undirectLocked(c)
		p.mu.Unlock()
		return nil
	}
	p.mu.Lock()
	w := c.w
	if !c.direct || w == nil || w.held[c.seq] != c || w.tok.holder != tokFree || w.tok.loopWanted || w.gone {
		p.undirectLocked(c)
		p.mu.Unlock()
		return nil
	}
	w.tok.holder = tokDirect
	p.mu.Unlock()
	var err error
	for !fin.Load() {
		p.spinReadable(w)
		b, release, rerr := w.recv(rctx)
		if rerr != nil {
			if rctx == ctx && ctx.Err() != nil {
				err = ctx.Err()
			}
			break
		}
		ok := w.handleFrame(b)
		if release != nil {
			release()
		}
		if !ok {
			break
		}
	}
	p.mu.Lock()
	c.direct = false
	w.releaseTokLocked()
	p.mu.Unlock()
	return err
}

// spinReadable waits up to futureSpin for the worker's connection to
// become readable before a direct reader blocks in a receive: an answer
// that comes back that soon is picked up without this thread sleeping
// and being woken (10-20 µs on a virtual machine), which dominates the
// round trip of a short task. The worker being another process, it
// spins whatever the caller's GOMAXPROCS (spin.Bounded.SpinReadable);
// with a single CPU it does not spin at all (the receive yields to the
// worker by itself). A spin that runs out turns spinning off for the
// pool's next spin.SkipAfterMiss waits, so a caller of long tasks burns
// at most futureSpin per that many waits.
func (p *Pool) spinReadable(w *workerHandle) {
	if fd := w.tok.fd; fd >= 0 && !w.conn.Buffered() {
		p.spin.SpinReadable(fd, futureSpin)
	}
}
