// SPDX-License-Identifier: Apache-2.0

// Package pool runs functions on a pool of worker processes, like
// Python's multiprocessing.Pool, without its failure modes: a worker that
// dies never hangs the pool.
//
// # Tasks
//
// A task is a function registered at package level, so that the workers,
// which are re-executions of the same binary, know it too:
//
//	var Square = pool.Register("square", func(ctx context.Context, x int) (int, error) {
//		return x * x, nil
//	})
//
//	func main() {
//		process.Init() // first thing: a worker runs its tasks from here
//		p, err := pool.New(ctx, pool.Workers(4))
//		...
//		defer p.Terminate()
//		squares, err := Square.Map(ctx, p, []int{1, 2, 3})
//	}
//
// Register2, Register3 and Register4 register functions of two to four
// arguments (their input type is Args2[A, B], Args3 or Args4; Map over a
// slice of them is Python's starmap, see Starmap).
// Arguments and results travel as their memory image when they hold no
// pointers (numbers, bools, arrays and structs of them), length-prefixed
// for strings and []byte, and with encoding/gob otherwise, one value per
// chunk of tasks. A chunk whose arguments or results encode to more than
// the SharedMemory threshold (256 KiB by default; SharedMemory(-1) turns
// it off) travels through shared memory instead of the worker's
// connection: written once into a memfd segment that is reused, read by
// the other side from its mapping (the worker connections stay pipes: the
// two sides reopen each other's segments through /proc, so small tasks
// pay nothing for it), and a worker killed in the middle leaves nothing
// behind (docs/performance.md, "Big data").
// Map's large byte slices, strings and plain data are encoded when their
// chunk is sent, straight into the segment (the caller must not change
// them while Map runs, which it waits for anyway); other calls and types
// are encoded first, then copied in. A task's []byte argument that came
// through shared memory is lent from the segment, not copied: it is valid
// until the task returns, and a task that keeps it (or a slice of it)
// longer must copy it (bytes.Clone). Writing into it is allowed and
// changes only the worker's copy. Results over the threshold are encoded
// straight into a segment too, and the caller gets them in its own
// memory (one copy out of the segment). A []byte result that lies in the
// task's lent argument (the argument itself, changed in place or not, or
// a part of it) is not copied by the worker at all: the pool copies it
// out of the segment it wrote the argument into, which the worker hands
// back (its one copy).
//
// # Calls
//
// Every call takes the pool and a context:
//
//   - Map (ordered []R), Starmap: wait for every task, then return the
//     error of the failed task with the lowest index (no fail-fast, like
//     Python), with the successful results filled in.
//   - Imap (ordered) and ImapUnordered (completion order) return an
//     iter.Seq2[R, error]; the input iter.Seq is read lazily, at most
//     BufferSize chunks ahead, so an endless input runs in bounded
//     memory; breaking out of the loop cancels what is still running.
//   - Apply runs one task and waits; Submit and ApplyAsync return a
//     *Future (Get, Done, Ready; success and error callbacks); MapAsync
//     and StarmapAsync return a *Future of the whole call.
//   - Futures as in concurrent.futures: Future.Cancel removes a queued
//     task or cancels a running one through its context, and says which
//     (CancelOutcome); AsCompleted iterates futures as they complete (an
//     iter.Seq); WaitFirst and WaitAll wait with a context; Shutdown(ctx,
//     true) closes the pool, fails the tasks no worker took with
//     ErrCancelled and waits for the running ones (Python's
//     shutdown(cancel_futures=True)).
//   - Tasks of several arguments: Register2, Register3 and Register4 take
//     an Args2, Args3 or Args4 struct, and Starmap is Map over a slice of
//     them. Go has no variadic type parameters, so a task has one argument
//     type; a struct per arity keeps Map, Imap and Submit one generic
//     method each, checked by the compiler (for more arguments, register
//     a task of your own struct).
//
// Chunksize sets how many tasks travel together (Map's default is
// Python's ceil(len/(4×workers)), Imap's is 1); whatever the chunksize,
// the pool keeps a few chunks in flight per worker and writes the frames
// queued for a worker in one system call, and workers answer the same
// way. OnProgress reports done/failed/total counts after every chunk, for
// progress bars. A caller waiting in Future.Get (or Apply) for a lone
// task on an otherwise idle worker receives the result from the worker's
// connection itself, spinning up to 100 µs before it sleeps, rather than
// through the pool's reader goroutine: one thread wake-up less per round
// trip. A worker that has answered everything likewise polls for its next
// request for up to 50 µs. Both spins yield the CPU between polls, do not
// spin with a single CPU, and stop spinning for a while after one that
// ran out.
//
// # Robustness
//
// Each worker has its own connection, so the pool always knows which
// chunks a worker holds, and a worker runs them in the order it got them.
//
//   - Worker death (a crash, SIGKILL, the OOM killer, os.Exit in a task):
//     the end of its connection tells the pool at once, and a replacement
//     is started. The death costs the task that was running, not its
//     chunk: each worker notes in a word of shared memory which task it is
//     running (one memory write per task), so the pool knows. That task
//     fails with a *WorkerDiedError (errors.Is ErrWorkerDied; it names the
//     pid and the signal or exit code), or runs again on another worker
//     while it has Retries left. The other tasks the worker held run again
//     without being charged, except those whose results had already
//     arrived: a worker sends the results of a long chunk's finished tasks
//     as they finish (every 10 ms once the chunk has run 1 ms), so they are
//     kept. A worker that dies outside any task charges nothing at once:
//     a chunk it was decoding or encoding runs again alone on a worker and
//     is charged at its third such death; chunks it held but had not
//     reached (it was starting, or receiving) run again and are charged
//     only at their tenth, so replacements killed at random while they
//     start cost nothing, and still nothing runs forever. Nothing waits
//     forever.
//   - Task timeout (TaskTimeout): each task's context has a deadline from
//     the moment its worker starts it. A task that honours its context
//     returns its own error (a *RemoteError, errors.Is
//     context.DeadlineExceeded). One that does not return is stopped with
//     its worker: SIGTERM, SIGKILL after KillGrace, and it fails with a
//     *TimeoutError (errors.Is context.DeadlineExceeded). The other tasks
//     that worker held run again elsewhere (so a task in the same chunk
//     may run twice: tasks should be idempotent when timeouts are used).
//   - Cancellation: when a call's context ends, the call returns
//     ctx.Err() at once, its queued tasks are dropped, and the workers
//     running its tasks are told to cancel them (their contexts end). A
//     worker whose cancelled task has not returned after KillGrace is
//     killed and replaced.
//   - Task errors and panics reach the caller as a *RemoteError with the
//     worker's message, the error's Go type and, for a panic, the worker's
//     stack. Errors registered with package ipc/remote (remote.Register
//     for sentinels, remote.RegisterType for error types) keep their
//     identity: errors.Is and errors.As match them in the caller, however
//     often the task wrapped them. A result that cannot be encoded fails its task alone
//     (errors.Is ErrEncode); the pool goes on.
//   - Recycling: MaxTasksPerChild, MaxMemory (the worker's RSS, read from
//     /proc after each chunk) and MaxWorkerAge retire a worker once it
//     has answered what it holds; its replacement is started at once.
//   - If a worker cannot be started during New, the ones already started
//     are stopped and New returns a *StartError. An Initializer runs once
//     in every worker; when it fails, New returns its error.
//   - Replacements: a replacement that cannot be started (its Starter
//     fails, or it dies before it reports ready) is started again with
//     backoff until the pool is back to its size. Tasks never fail for
//     that while another worker can run them; when none can and several
//     starts in a row failed, the waiting tasks fail with one *StartError
//     wrapping the last failure (a worker killed before it was ready is a
//     *WorkerDiedError there, errors.Is ErrWorkerDied, like any death).
//
// # Lifecycle
//
// Close stops accepting calls (they fail with ErrClosed) and lets the
// submitted work finish; Terminate fails everything pending with
// ErrTerminated and stops the workers (SIGTERM, then SIGKILL after
// KillGrace); Join waits for the workers to exit (ErrRunning before Close
// or Terminate); Wait is Close plus Join. No goroutine, file descriptor
// or child process outlives Join.
//
// All methods of Pool, Task and Future are safe for concurrent use.
// Callbacks (OnProgress, ApplyAsync's) run on the goroutine that
// receives the results (one of the pool's, or a caller waiting in
// Future.Get) and must return quickly.
//
// NewThreadPool gives the same API on goroutines of this process
// (Python's ThreadPool): switching is a one-line change. Errors then come
// back as the task returned them.
//
// # Handles
//
// Locks, queues, shared memory values, connections and manager proxies
// reach workers through the Initializer, as Python's
// Pool(initializer=init, initargs=(lock, value)) does: the initializer's
// argument is a handle or a struct of them (and plain fields), each
// worker attaches its own copy, including replacements and recycled
// workers started later, and the initializer keeps them in package
// variables that the tasks use:
//
//	type Shared struct {
//		Lock  *syncprim.Lock
//		Count *shm.Value[int64]
//	}
//	var shared Shared // in each worker, set by the initializer
//	var setup = pool.Register("setup", func(ctx context.Context, s Shared) (struct{}, error) {
//		shared = s
//		return struct{}{}, nil
//	})
//	p, err := pool.New(ctx, pool.Initializer(setup, Shared{lock, count}))
//
// Shared-memory handles travel in task arguments too, by reference: a
// task's argument may be, or hold in struct fields, a *shm.Segment,
// *shm.Array, *shm.Value, *shm.Block (an arena's) or *shm.ShareableList,
// and each task works on the same memory as the caller, without a copy
// (a Map whose tasks fill disjoint parts of one Array, for instance). The
// pool keeps one duplicate of each distinct handle's descriptor open
// until the call ends; a worker reopens it through /proc/PID/fd (so the
// pool's pipes need not carry descriptors, and a descriptor number reused
// after the call is recognised and refused), maps it for the chunk's
// tasks and closes it once they have returned: a task must not keep the
// handle, or memory it points to, past its return. Attaching costs an
// open and an mmap per handle per chunk, and the pages a task touches
// fault in its worker. This works between processes of one host, with a
// process Pool; a ThreadPool passes the handles as they are, and other
// Runners (a cluster) refuse them with ErrHandleArg.
//
// Other handles do not travel in task arguments: a task whose argument
// type carries a Lock, a Queue, an *ipc.Conn or a manager proxy fails
// with ErrHandleArg (a ThreadPool, which runs in this process, takes
// them). They hold more than memory (sockets, pipes, a server's state
// or ownership), attaching one costs a connection or registration per
// task where the initializer pays once per worker, and a handle attached
// for one task would need an owner to close it after. As in Python,
// where passing a Lock to apply_async fails with "Lock objects should
// only be shared between processes through inheritance", pass them to
// the initializer.
//
// # Recipes
//
//   - Parallel map over a slice: Task.Map.
//   - A stream with bounded memory: Task.Imap over an iter.Seq, break when
//     done.
//   - Fire and collect later: Task.Submit, then Future.Get.
//   - Survive crashing native code: Retries(n), and check
//     errors.Is(err, ErrWorkerDied) for what still failed.
//   - Kill runaway tasks: TaskTimeout(d), KillGrace(d).
//   - Leaky libraries: MaxTasksPerChild(n) or MaxMemory(bytes).
//   - Progress bar: OnProgress.
//
// # Wire protocol
//
// The messages are defined in proto/pool/v1/pool.proto: the pool writes
// ToWorker frames (Chunk, Cancel, Stop) and the worker FromWorker frames
// (Ready once, then Result per chunk, partial Results for a long chunk,
// and Started per task when a task timeout is set), each one ipc frame on
// the worker's duplex pipe. Each worker also gets a progress word, 8 bytes
// of shared memory (see progress.go).
package pool
