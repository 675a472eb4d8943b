// SPDX-License-Identifier: Apache-2.0

// A ThreadPool (NewThreadPool): a Pool whose workers are goroutines of the
// caller's process, its backend (threadBackend) and the worker goroutine.

package pool

import (
	"context"
	"slices"
	"sync/atomic"
)

// NewThreadPool returns a pool whose workers are goroutines of this
// process (Python's ThreadPool): the same Tasks and calls as a process
// Pool, no encoding, no crash isolation. A task's error reaches the caller
// as the task returned it (a panic as a *RemoteError). MaxTasksPerChild,
// MaxMemory, MaxWorkerAge, Retries and Starter have no effect;
// TaskTimeout only sets the tasks' deadline.
func NewThreadPool(ctx context.Context, opts ...Option) (*Pool, error) {
	p, err := newPool(opts)
	if err != nil {
		return nil, err
	}
	// What recycles or retries worker processes does not apply.
	p.o.maxTasks, p.o.maxMemory, p.o.maxAge, p.o.retries = 0, 0, 0, 0
	p.be = threadBackend{p}
	ws := make([]*workerHandle, p.o.workers)
	for i := range ws {
		if ws[i], err = p.be.startWorker(ctx); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	for _, w := range ws {
		p.addWorkerLocked(w)
	}
	p.mu.Unlock()
	return p, nil
}

// threadBackend is the backend of a ThreadPool. A worker is a goroutine
// (threadLoop) that runs the chunks given to it through its channel
// (workerHandle.tq), in order, with their inputs as they are: nothing is
// encoded. A job's running tasks are cancelled through the job's context.
type threadBackend struct{ p *Pool }

// startWorker runs the initializer, in the caller's goroutine (a
// ThreadPool's workers share this process: the initializer runs once per
// worker, one run after the other).
func (b threadBackend) startWorker(context.Context) (*workerHandle, error) {
	if init := b.p.o.initLocal; init != nil {
		if err := init(); err != nil {
			return nil, &StartError{Err: err}
		}
	}
	// tq has room for every chunk a worker may hold (hasRoom): sending
	// on it never blocks.
	return &workerHandle{p: b.p, held: map[uint64]*chunk{}, tq: make(chan *chunk, 4*minHeldTasks), pid: selfPid}, nil
}

func (threadBackend) discard(*workerHandle) {}

func (b threadBackend) runLocked(w *workerHandle) {
	b.p.wg.Add(1)
	go w.threadLoop()
}

func (threadBackend) jobContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}

func (threadBackend) cancelJobLocked(_ *job, fl []*workerHandle) []*workerHandle { return fl }

func (threadBackend) frames() bool { return false }

func (threadBackend) prepareSent(c *chunk, inputs []byte) error { return c.decodeSent(inputs) }

func (threadBackend) sendLocked(w *workerHandle, c *chunk) bool {
	w.tq <- c
	return false
}

func (threadBackend) stopLocked(w *workerHandle) bool {
	close(w.tq)
	return false
}

// drainLocked: a worker goroutine runs whatever it holds anyway.
func (threadBackend) drainLocked(*workerHandle) {}

func (threadBackend) terminateLocked(w *workerHandle) {
	if w.life != lifeStopping {
		w.life = lifeStopping
		close(w.tq)
	}
}

func (threadBackend) readsDirect() bool { return false }

// spinWait does not spin: the worker goroutine sets the result itself.
func (threadBackend) spinWait(*atomic.Bool) bool { return false }

// threadLoop is a ThreadPool worker goroutine.
func (w *workerHandle) threadLoop() {
	p := w.p
	defer p.wg.Done()
	var h *runHooks
	if p.o.taskTimeout > 0 {
		h = &runHooks{timeout: p.o.taskTimeout}
	}
	for c := range w.tq {
		var out any
		var errs []idxErr
		out, errs = c.job.task.runLocal(c.job.ctx, c.input(), h)
		for i := range errs {
			if re, ok := errs[i].err.(*RemoteError); ok {
				re.Index = c.start + errs[i].idx
			}
		}
		p.mu.Lock()
		delete(w.held, c.seq)
		w.heldTasks -= c.n
		ended := c.job.ended
		p.dispatchLocked() // a ThreadPool has no frames to flush
		p.mu.Unlock()
		if !ended {
			c.job.sink.deliver(c, out, errs, nil)
		}
	}
	p.mu.Lock()
	w.gone = true
	p.ws = slices.DeleteFunc(p.ws, func(x *workerHandle) bool { return x == w })
	p.maybeDoneLocked()
	p.mu.Unlock()
}
