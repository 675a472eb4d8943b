// SPDX-License-Identifier: Apache-2.0

// Parent side: the backend of a Pool of worker processes (New). Each
// worker is a process on its own connection; chunks travel to it as
// frames, and its answers come back through its reader goroutine or, for
// a lone Submit, to the caller waiting for it (parent_handoff.go).

package pool

import (
	"context"
	"sync/atomic"
	"time"

	pb "github.com/multiproc/multiproc/proto/pool/v1"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// procBackend is the backend of a process Pool.
type procBackend struct {
	p   *Pool
	cfg []byte // the encoded WorkerConfig every worker starts with
}

// startWorker is in parent_start.go.

func (b *procBackend) discard(w *workerHandle) {
	w.proc.Kill()
	w.proc.Wait()
	w.conn.Close()
	w.prog.Close()
}

// runLocked starts the worker's reader goroutine (readLoop, which
// removes the worker once its connection ends) and the goroutine that
// watches its exit, and arms its retirement (MaxWorkerAge).
func (b *procBackend) runLocked(w *workerHandle) {
	p := b.p
	p.wg.Add(2)
	go w.readLoop()
	go w.watchExit()
	if p.o.maxAge > 0 {
		w.ageTimer = time.AfterFunc(p.o.maxAge, func() {
			p.mu.Lock()
			if !w.gone && w.life == lifeActive {
				w.life = lifeRetiring
				p.startWorkersLocked()
			}
			fl := p.dispatchLocked()
			p.mu.Unlock()
			flushAll(fl)
		})
	}
}

// jobContext: a worker process runs a job's tasks with a context of its
// own, which a Cancel message ends (cancelJobLocked).
func (b *procBackend) jobContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return ctx, nil
}

// cancelJobLocked sends Cancel to every worker holding chunks of j, and
// kills those still holding them after the kill grace.
func (b *procBackend) cancelJobLocked(j *job, fl []*workerHandle) []*workerHandle {
	p := b.p
	var cancelFrame []byte
	for _, w := range p.ws {
		if w.gone || !w.holds(j) {
			continue
		}
		if cancelFrame == nil {
			cancelFrame, _ = proto.Marshal(&pb.ToWorker{Msg: &pb.ToWorker_Cancel{Cancel: &pb.Cancel{Job: j.id}}})
		}
		w.push(cancelFrame)
		fl = append(fl, w)
		time.AfterFunc(p.o.killGrace, func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if !w.gone && w.kill == killNone && w.holds(j) {
				p.log.Info("killing a worker whose cancelled task does not return", zap.Int("pid", w.pid))
				w.kill = killCancel
				w.terminate()
			}
		})
	}
	return fl
}

// frames: a worker process receives its chunks as ToWorker frames.
func (b *procBackend) frames() bool { return true }

// prepareSent frames the encoded inputs as they are. With a task timeout
// they are decoded too: a timeout may split the chunk, which re-encodes
// part of them.
func (b *procBackend) prepareSent(c *chunk, inputs []byte) error {
	if b.p.o.taskTimeout > 0 {
		if err := c.decodeSent(inputs); err != nil {
			return err
		}
	}
	c.frame = appendChunk(nil, c.seq, c.job.id, c.job.task.name, c.n, inputs)
	return nil
}

// sendLocked queues c's frame for w (a large chunk's is made as it is
// written, chunk.lazy). A lone Submit's chunk, all that w holds, whose
// read token is free, does not wake the reader goroutine: its caller may
// receive the result itself (see readToken).
func (b *procBackend) sendLocked(w *workerHandle, c *chunk) bool {
	switch {
	case c.lazy > 0:
		w.pushLazy(c)
	case c.direct && len(w.held) == 1 && w.tok.holder == tokFree && !w.tok.loopWanted:
		w.pushQuiet(c.frame)
	default:
		w.push(c.frame)
	}
	return true
}

func (b *procBackend) stopLocked(w *workerHandle) bool {
	w.push(stopFrame)
	return true
}

// drainLocked has the reader goroutine receive what w holds.
func (b *procBackend) drainLocked(w *workerHandle) { w.wantLoopLocked() }

// terminateLocked sends SIGTERM (SIGKILL after the kill grace); the reader
// goroutine sees the connection end.
func (b *procBackend) terminateLocked(w *workerHandle) {
	w.terminate()
	w.wantLoopLocked()
}

func (b *procBackend) readsDirect() bool { return true }

// spinWait is the Bounded spin of the pool's waits (see Future.spin).
func (b *procBackend) spinWait(fin *atomic.Bool) bool { return b.p.spin.Spin(futureSpin, fin.Load) }
