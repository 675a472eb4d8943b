// SPDX-License-Identifier: Apache-2.0

// The seam between a Pool and what its workers are: worker processes
// (procBackend, parent_backend.go) or goroutines of this process
// (threadBackend, thread_pool.go).

package pool

import (
	"context"
	"sync/atomic"
)

// backend is what a Pool's workers are. The Pool itself is the same for
// both kinds: its calls (jobs), the queue, handing chunks to the least
// loaded worker with room, Close, Terminate and Join, and Future.Cancel's
// view of where a task is (parent_dispatch.go, pool.go). The backend does
// what differs: how a worker starts and runs, how a chunk reaches it, how
// a job's running tasks are cancelled, and how a caller waits.
//
// Methods whose names end in Locked are called with Pool.mu held and must
// not block. The ones returning a flush flag queue frames: the Pool
// flushes that worker (workerHandle.flush) once Pool.mu is released.
type backend interface {
	// startWorker starts one worker and waits until it is ready (its
	// initializer has run). The worker is not yet the pool's: the Pool
	// adds it (addWorkerLocked), or gives it back to discard.
	startWorker(ctx context.Context) (*workerHandle, error)
	// discard stops a started worker that the pool did not add.
	discard(w *workerHandle)
	// runLocked starts the goroutines of a worker just added to the
	// pool, each counted in Pool.wg. One of them removes the worker from
	// the pool (Pool.ws) once it is gone.
	runLocked(w *workerHandle)

	// jobContext returns the context a job's tasks run with, derived
	// from the caller's ctx, and the function that cancels it when the
	// job ends (nil when the backend cancels running tasks in
	// cancelJobLocked instead).
	jobContext(ctx context.Context) (context.Context, context.CancelFunc)
	// cancelJobLocked tells the workers that hold chunks of j, which has
	// just ended, to cancel them. It returns fl with the workers to
	// flush appended.
	cancelJobLocked(j *job, fl []*workerHandle) []*workerHandle

	// frames reports whether chunks reach the workers encoded, as
	// frames, which chunkMaker makes with the chunks (in blocks that a
	// call's chunks share); otherwise workers take c.in as it is. (A
	// query, not a method that makes the frame: a chunkMaker passed
	// through an interface would escape, one allocation more per Submit.)
	frames() bool
	// prepareSent readies c, a chunk whose inputs arrived encoded
	// (Call.Send of Pool.StartCall), to be sent to a worker.
	prepareSent(c *chunk, inputs []byte) error

	// sendLocked gives c to w, which already counts it as held. It
	// reports whether w is to be flushed.
	sendLocked(w *workerHandle, c *chunk) (flush bool)
	// stopLocked asks w, which holds nothing, to stop. It reports whether
	// w is to be flushed.
	stopLocked(w *workerHandle) (flush bool)
	// drainLocked makes sure that what w holds is answered although w is
	// retiring or the pool is closing, whether callers wait for the
	// answers or not.
	drainLocked(w *workerHandle)
	// terminateLocked stops w now (Pool.Terminate); the chunks it holds
	// have been failed already.
	terminateLocked(w *workerHandle)

	// readsDirect reports whether the caller of a lone Submit may receive
	// its result from the worker itself (see readToken).
	readsDirect() bool
	// spinWait spins for a while, the way the backend's results arrive
	// best, until fin is set (then it returns true), before a caller
	// waiting for a result parks.
	spinWait(fin *atomic.Bool) bool
}
