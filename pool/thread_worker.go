// SPDX-License-Identifier: Apache-2.0

// A ThreadPool's worker: a goroutine of the caller's process.

package pool

import "slices"

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
