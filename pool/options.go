// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"go.uber.org/zap"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
)

// An Option configures a Pool (New, NewThreadPool).
type Option func(*options) error

type options struct {
	workers   int
	initTask  *taskInfo
	initInput []byte
	// initHandles are the handles of the initializer's argument, handed
	// to every worker at its start (handles.go).
	initHandles []handler
	initLocal   func() error
	maxTasks    int
	maxMemory   int64
	maxAge      time.Duration
	starter     process.Starter
	log         *zap.Logger
	retries     int
	taskTimeout time.Duration
	killGrace   time.Duration
	env         []string
	shm         int64 // SharedMemory's threshold; 0: off (on by default)

	// timeoutSlack is how long after a task's deadline its worker is
	// stopped (the constant timeoutSlack; tests lengthen it through
	// export_test.go so a loaded machine cannot outrun it).
	timeoutSlack time.Duration
}

// Workers sets the number of worker processes (goroutines for a
// ThreadPool). The default is process.CPUCount(). n < 1 is an error
// ("Number of processes must be at least 1").
func Workers(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("pool: Workers(%d): number of processes must be at least 1", n)
		}
		o.workers = n
		return nil
	}
}

// Initializer runs task t with argument arg once in every worker, before
// it takes any task (Python's initializer and initargs); its result is
// discarded. A worker whose initializer fails is not used: New returns a
// *StartError carrying the initializer's *RemoteError.
//
// arg may carry handles, as a Process argument does: arg is a handle (a
// *syncprim.Lock, a *queue.Queue, a *shm.Value, an *ipc.Conn, a manager
// proxy: a pointer type with MultiprocAttach), or a struct, or pointer to
// one, whose exported fields (nested structs included) are handles or
// plain values. Each worker, including those started later (replacements
// after a death, workers recycled by MaxTasksPerChild, MaxMemory or
// MaxWorkerAge), receives its own attached copy of each handle: the pool
// keeps arg's handles and hands them again at every start, so they must
// stay open (not Closed) while the pool runs. Handles in slices, maps or
// arrays are refused; give each its own field. See "Handles" in the
// package documentation for the pattern.
func Initializer[A, R any](t *Task[A, R], arg A) Option {
	return func(o *options) error {
		if t == nil {
			return errors.New("pool: Initializer: nil task")
		}
		var in []byte
		var hs []handler
		var err error
		if _, err := shapeOf(reflect.TypeFor[A]()); err != nil {
			return fmt.Errorf("pool: Initializer(%s): %w", t.info.name, err)
		}
		if t.info.shape != nil {
			hs, in, err = t.info.shape.split(reflect.ValueOf(&arg).Elem())
		} else {
			in, err = t.in.Append(nil, []A{arg})
		}
		if err != nil {
			return fmt.Errorf("pool: Initializer(%s): encoding the argument: %w", t.info.name, err)
		}
		o.initTask, o.initInput, o.initHandles = t.info, in, hs
		o.initLocal = func() error {
			_, errs := t.runLocal(contextBackground(), []A{arg}, nil)
			if len(errs) > 0 {
				return errs[0].err
			}
			return nil
		}
		return nil
	}
}

// MaxTasksPerChild retires a worker after it has run n tasks and starts a
// fresh one (Python's maxtasksperchild). A chunk is never split, so a
// worker may run up to one chunk more than n. n < 1 is an error.
// ThreadPool ignores it.
func MaxTasksPerChild(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("pool: MaxTasksPerChild(%d): maxtasksperchild must be a positive integer", n)
		}
		o.maxTasks = n
		return nil
	}
}

// MaxMemory retires a worker whose resident set size (read from
// /proc/<pid>/statm after each chunk it completes) is above bytes; it
// finishes the tasks it holds and a fresh worker takes its place.
// ThreadPool ignores it.
func MaxMemory(bytes int64) Option {
	return func(o *options) error {
		if bytes < 1 {
			return fmt.Errorf("pool: MaxMemory(%d): must be positive", bytes)
		}
		o.maxMemory = bytes
		return nil
	}
}

// MaxWorkerAge retires a worker that has run for d (it finishes the tasks
// it holds first). ThreadPool ignores it.
func MaxWorkerAge(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("pool: MaxWorkerAge(%v): must be positive", d)
		}
		o.maxAge = d
		return nil
	}
}

// SharedMemory sets the threshold above which a task's arguments or
// results (a chunk's, encoded) travel between the pool and a worker
// through shared memory instead of the worker's connection: they are
// copied once into a memfd segment that the sender keeps for reuse and the
// receiver reads in place (ipc.SharedMemory; docs/performance.md, "Big
// data"). It is on by default, at ipc.DefaultSharedMemoryThreshold
// (256 KiB), which threshold 0 also means; a threshold < 0 turns it off.
//
// The worker connections stay pipes, whose round trip is about half a
// socketpair's: the pool and its workers reopen each other's segments
// through /proc/PID/fd (ipc.SharedMemoryOverPipes), so small tasks pay
// nothing for it. (It was opt-in while it needed socketpairs:
// pool.apply_async.rtt 26 µs against 15.) A task's []byte argument that
// travels through shared memory is lent from the segment: valid until the
// task returns (copy what it keeps; see the package documentation).
// Results are the caller's own memory. Turn it off for a pool whose
// workers cannot look into the parent's descriptors (see
// ipc.SharedMemoryOverPipes) or whose tasks keep their []byte arguments.
// ThreadPool ignores it.
func SharedMemory(threshold int64) Option {
	return func(o *options) error {
		switch {
		case threshold == 0:
			o.shm = ipc.DefaultSharedMemoryThreshold
		case threshold < 0:
			o.shm = 0
		default:
			o.shm = threshold
		}
		return nil
	}
}

// Starter starts workers with s. By default a pool uses
// process.DefaultStarter() as it was when New ran: Spawn, unless
// process.SetDefaultStarter chose another. A forkserver's Starter makes
// worker starts and replacements cheaper.
func Starter(s process.Starter) Option {
	return func(o *options) error {
		if s == nil {
			return errors.New("pool: Starter(nil)")
		}
		o.starter = s
		return nil
	}
}

// Logger sets the logger for the pool's diagnostics (worker starts,
// deaths, replacements). The default is zap.NewNop().
func Logger(l *zap.Logger) Option {
	return func(o *options) error {
		if l == nil {
			l = zap.NewNop()
		}
		o.log = l
		return nil
	}
}

// Retries makes a task whose worker died while holding it run again on
// another worker, up to n more times, before it fails with a
// *WorkerDiedError. The default is 0: a task runs at most once.
func Retries(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("pool: Retries(%d): must not be negative", n)
		}
		o.retries = n
		return nil
	}
}

// TaskTimeout gives every task a deadline d from the moment a worker
// starts it: the task's context carries the deadline, and if the task has
// not returned 100ms after it (time for a task that honours its context
// to return its own error), its worker is sent SIGTERM, then SIGKILL
// after the kill grace, and replaced; the task fails with a *TimeoutError
// (errors.Is(err, context.DeadlineExceeded)). With a timeout, each task
// costs one more small message. A ThreadPool only sets the deadline (a
// goroutine cannot be killed).
func TaskTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("pool: TaskTimeout(%v): must be positive", d)
		}
		o.taskTimeout = d
		return nil
	}
}

// KillGrace is how long a worker that was sent SIGTERM (task timeout,
// cancelled task that does not return, Terminate) may take to exit before
// it is sent SIGKILL. The default is one second.
func KillGrace(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("pool: KillGrace(%v): must be positive", d)
		}
		o.killGrace = d
		return nil
	}
}

// WorkerEnv adds KEY=VALUE pairs to the workers' environment. Workers run
// with GOMAXPROCS=1 by default (a pool's parallelism is its number of
// workers; one OS thread per worker avoids idle threads spinning on
// shared cores, worth up to 1.7x in throughput on small tasks); pass
// WorkerEnv("GOMAXPROCS=4") for tasks that run goroutines in parallel.
func WorkerEnv(kv ...string) Option {
	return func(o *options) error {
		o.env = append(o.env, kv...)
		return nil
	}
}

// A MapOption configures one call (Map, Imap, ImapUnordered, Submit...).
type MapOption func(*mapOptions)

type mapOptions struct {
	chunksize  int
	buffersize int
	progress   func(Progress)
}

// Chunksize sends the input to workers in chunks of n tasks (n < 1 means
// the default: for Map, ceil(len/(4×workers)) as in Python; for Imap and
// ImapUnordered, 1). Larger chunks cost less per task; a worker that dies
// costs the task it was running, whatever the chunksize.
func Chunksize(n int) MapOption { return func(o *mapOptions) { o.chunksize = n } }

// BufferSize bounds how many chunks of an Imap or ImapUnordered call are
// submitted ahead of the results the caller has consumed (Python 3.14's
// buffersize): the input iterator is read lazily, so an endless input
// uses bounded memory. The default keeps every worker busy (at least 2
// chunks per worker and 256 tasks per worker).
func BufferSize(n int) MapOption { return func(o *mapOptions) { o.buffersize = n } }

// Progress describes how far a call has come.
type Progress struct {
	Done   int // tasks finished, successfully or not
	Failed int // tasks that failed
	// Total is the number of tasks of a Map; for Imap and ImapUnordered it
	// is the number submitted so far.
	Total int
}

// OnProgress calls fn after each chunk of results arrives (from the
// goroutine that receives it: fn must return quickly), e.g. to draw a
// progress bar. Calls are serialized and Done never decreases.
func OnProgress(fn func(Progress)) MapOption { return func(o *mapOptions) { o.progress = fn } }
