// SPDX-License-Identifier: Apache-2.0

// Parent side: the pool's handle on one worker (workerHandle; a worker
// process's part of it, procWorker), writing frames to a worker process
// and receiving its answers.

package pool

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/shm"
	"go.uber.org/zap"
)

// workerHandle is the pool's side of one worker, in the parent: what the
// Pool's scheduling knows of it, the same for every backend, and the
// backend's own part: a worker process's (procWorker, whose fields read
// as the handle's own) or a ThreadPool goroutine's queue.
type workerHandle struct {
	p    *Pool
	pid  int
	name string

	// Under Pool.mu:
	held      map[uint64]*chunk // the chunks it holds, by seq
	heldTasks int               // their unanswered tasks
	heldLazy  int               // those of them with chunk.lazy
	sent      int               // tasks given to it in all (MaxTasksPerChild)
	order     uint64            // chunks given to it (chunk.order)
	life      workerLife
	gone      bool // its connection ended or it is being removed
	isolated  bool // runs a suspect chunk alone
	needFlush bool // in the list of workers to flush (dispatchInto)
	kill      killReason

	// One of these, by backend:
	*procWorker             // a worker process (New)
	tq          chan *chunk // a ThreadPool's worker goroutine's queue (thread_pool.go); closed to stop it
}

// procWorker is the parent's handle on a worker process: the process, its
// connection, and what watches it.
type procWorker struct {
	proc *process.Process
	conn *ipc.Conn
	// prog holds the worker's progress word (see progress.go), read once
	// the worker is dead.
	prog *shm.Segment
	word *uint64

	// Under Pool.mu:
	deadline  taskDeadline // the running task's (TaskTimeout)
	killTimer *time.Timer  // SIGKILL after the kill grace (terminate)
	ageTimer  *time.Timer  // retirement (MaxWorkerAge)
	tok       readToken    // who receives from conn (parent_handoff.go)

	out *ipc.Batcher // the frames to write to the worker
}

// workerLife is what the pool wants of a worker; it only moves forward.
type workerLife int

const (
	lifeActive   workerLife = iota // takes chunks
	lifeRetiring                   // finishes what it holds, then stops; a replacement starts
	lifeStopping                   // was sent Stop (retired, or the pool closed)
)

// push queues a frame for the worker (in order); flush writes them. The
// reader goroutine is to receive the answer. Called with Pool.mu held.
func (w *workerHandle) push(frame []byte) {
	w.pushQuiet(frame)
	w.wantLoopLocked()
}

// pushQuiet is push for the chunk of a lone Submit whose caller may
// receive the result itself (see readToken).
func (w *workerHandle) pushQuiet(frame []byte) {
	w.out.Enqueue(frame) // an error shows at flush
}

// pushLazy is push for a lazy chunk (chunk.lazy): its frame is encoded
// when it is written, straight into shared memory.
func (w *workerHandle) pushLazy(c *chunk) {
	w.out.EnqueueLazy(c.lazy, c.fill) // an error shows at flush
	w.wantLoopLocked()
}

// flush writes the queued frames, several per system call (see
// ipc.Batcher). A write that fails means the worker is dying or dead: it
// is killed, and its reader sees the end of its connection and the pool
// deals with the tasks it held.
func (w *workerHandle) flush() {
	if err := w.out.Flush(); err != nil {
		w.p.log.Debug("cannot write to a worker", zap.Int("pid", w.pid), zap.Error(err))
		w.proc.Kill()
		w.p.mu.Lock()
		w.wantLoopLocked()
		w.p.mu.Unlock()
	}
}

// readLoop receives a worker's messages while it holds the read token
// (see readToken) until the connection ends (the worker exited or was
// killed), then reaps the worker and settles the tasks it held.
func (w *workerHandle) readLoop() {
	p := w.p
	defer p.wg.Done()
	for {
		p.mu.Lock()
		for w.tok.holder != tokFree || !w.tok.loopWanted {
			p.mu.Unlock()
			<-w.tok.wake
			p.mu.Lock()
		}
		w.tok.holder = tokLoop
		p.mu.Unlock()
		if !w.receiveLoop() {
			break
		}
	}
	p.mu.Lock()
	w.gone = true
	p.mu.Unlock()
	// The connection ends when the worker exits; give it the kill grace
	// in case it only closed the connection.
	ctx, cancel := context.WithTimeout(context.Background(), p.o.killGrace)
	err := w.proc.Join(ctx)
	cancel()
	if ctx.Err() != nil && err == ctx.Err() {
		w.proc.Kill()
		err = w.proc.Join(context.Background())
	}
	code, _ := w.proc.ExitCode()
	w.proc.Close()
	w.conn.Close()
	p.workerGone(w, code, err)
}

// watchExit makes the reader goroutine receive from the worker once its
// process exits: the reader goroutine receives only while the worker
// holds work (see readToken), and the death of an idle worker must be
// seen at once too.
func (w *workerHandle) watchExit() {
	defer w.p.wg.Done()
	w.proc.Join(context.Background())
	w.p.mu.Lock()
	w.wantLoopLocked()
	w.p.mu.Unlock()
}

// receiveLoop receives and handles messages until the worker holds
// nothing more (it gives the token back and returns true) or the
// connection ends (false).
func (w *workerHandle) receiveLoop() bool {
	p := w.p
	for {
		b, release, err := w.recv(context.Background())
		if err != nil {
			return false
		}
		ok := w.handleFrame(b)
		if release != nil {
			release()
		}
		if !ok {
			return false
		}
		if !w.conn.Ready() {
			p.mu.Lock()
			fl := p.dispatchLocked()
			idle := len(w.held) == 0 && w.life != lifeStopping && w.kill == killNone && !w.gone
			if idle {
				w.tok.holder, w.tok.loopWanted = tokFree, false
			}
			p.mu.Unlock()
			flushAll(fl)
			if idle {
				return true
			}
			// Let the goroutines just woken (callers waiting for results)
			// run on this P before this goroutine blocks in poll(2)
			// holding it.
			runtime.Gosched()
		}
	}
}

// recv receives one message into the token holder's buffer (reused:
// nothing keeps a reference to a message once it is handled; results
// and errors are decoded into fresh memory). Longer messages get memory
// of their own, and large ones (shared memory) are read in place: the
// caller calls release (when not nil) once it has handled the message.
func (w *workerHandle) recv(ctx context.Context) (b []byte, release func(), err error) {
	return w.conn.RecvShared(ctx, w.tok.buf)
}

// handleFrame acts on one message from the worker. A malformed one gets
// the worker killed (false).
func (w *workerHandle) handleFrame(b []byte) bool {
	r, isResult, m, err := parseFromWorker(b)
	if err != nil {
		w.p.log.Error("bad message from a worker; killing it", zap.Int("pid", w.pid), zap.Error(err))
		w.proc.Kill()
		return false
	}
	if isResult {
		if !w.onResult(&r) {
			return false
		}
	} else if s := m.GetStarted(); s != nil {
		w.onStarted(s)
	}
	return true
}

// readBuf is the size of a worker reader's receive buffer; longer
// messages are received into memory of their own.
const readBuf = 4 << 10

// onResult settles a chunk a worker answered, or the part of it that a
// partial result covers. A result that does not fit its chunk (a part out
// of order) is a protocol error: false, and the worker is killed.
func (w *workerHandle) onResult(r *resultMsg) bool {
	p := w.p
	var lent []byte // the chunk's frame, handed back (lend.go)
	if len(r.lentSpans) > 0 {
		frame, free, ok := w.conn.HandedBack(r.lentSeg)
		if !ok || r.count != 0 {
			p.log.Error("a worker's result names a segment the pool did not send it; killing it", zap.Int("pid", w.pid))
			w.proc.Kill()
			return false
		}
		// Whatever becomes of the result, the segment is the pool's
		// again once it is read.
		defer free()
		lent = frame
	}
	p.mu.Lock()
	c := w.held[r.seq]
	if c == nil {
		p.mu.Unlock()
		return true
	}
	off, n, final := int(r.off), c.n-int(r.off), r.count == 0
	if !final {
		n = int(r.count)
	}
	if off != c.done || n <= 0 || off+n > c.n || (!final && off+n == c.n) {
		p.mu.Unlock()
		p.log.Error("a worker's result does not fit its chunk; killing it", zap.Int("pid", w.pid),
			zap.Int("offset", off), zap.Int("count", n), zap.Int("done", c.done), zap.Int("tasks", c.n))
		w.proc.Kill()
		return false
	}
	w.heldTasks -= n
	if final {
		delete(w.held, r.seq)
		if c.lazy > 0 {
			w.heldLazy--
		}
		if c.suspect {
			w.isolated = false
		}
		w.deadline.gen++
		if w.deadline.timer != nil {
			w.deadline.timer.Stop()
			w.deadline.timer = nil
		}
	} else {
		c.done += n
	}
	ended := c.job.ended
	p.mu.Unlock()

	if final && p.o.maxMemory > 0 {
		if rss, err := rssOf(w.pid); err == nil && rss > p.o.maxMemory {
			p.mu.Lock()
			if w.life == lifeActive {
				p.log.Info("worker passed its memory cap; retiring it", zap.Int("pid", w.pid), zap.Int64("rss", rss))
				w.life = lifeRetiring
				p.startWorkersLocked()
			}
			p.mu.Unlock()
		}
	}
	if ended || r.cancelled {
		return true
	}
	v := c.view(off, off+n)
	var errs []idxErr
	for _, te := range r.errs {
		e := te.Error
		i := int(te.Index) - off
		if e == nil || i < 0 || i >= n {
			continue
		}
		errs = append(errs, idxErr{i, &RemoteError{
			Task: c.job.task.name, Index: v.start + i, Pid: w.pid, Report: remote.Decode(e),
		}})
	}
	var out any
	var err error
	if lent != nil {
		out, err = c.job.task.decodeLent(r.outputs, n, lent, r.lentSpans)
	} else if es, ok := c.job.sink.(encodedSink); ok {
		if err = es.deliverEncoded(v, r.outputs, errs); err == nil {
			return true
		}
	} else {
		out, err = c.job.task.decodeOut(r.outputs, n)
	}
	if err != nil && len(errs) < n {
		c.job.sink.deliver(v, nil, nil, &RemoteError{Task: c.job.task.name, Index: v.start, Pid: w.pid,
			Report: remote.ReportOf(fmt.Errorf("%w: decoding the results: %w", ErrEncode, err))})
		return true
	}
	c.job.sink.deliver(v, out, errs, nil)
	return true
}

// rssOf returns the resident set size of process pid.
func rssOf(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("pool: bad statm %q", b)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

func signalOf(code int) syscall.Signal { return syscall.Signal(-code) }
