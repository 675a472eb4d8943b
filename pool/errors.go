// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/multiproc/multiproc/ipc/remote"
)

var (
	// ErrClosed is returned when work is submitted to a pool that was
	// closed or terminated (Python's ValueError("Pool not running")).
	ErrClosed = errors.New("pool: pool is not running")
	// ErrRunning is returned by Join while the pool is still running:
	// call Close or Terminate first (Python's ValueError("Pool is still
	// running")).
	ErrRunning = errors.New("pool: pool is still running; Close or Terminate it before Join")
	// ErrTerminated is the error of every task that was pending or running
	// when Terminate was called.
	ErrTerminated = errors.New("pool: pool was terminated")
	// ErrWorkerDied is matched (errors.Is) by a *WorkerDiedError: a worker
	// process died while it held the task.
	ErrWorkerDied = errors.New("pool: worker process died")
	// ErrEncode is matched by a *RemoteError for a task whose argument or
	// result could not be encoded (Python's MaybeEncodingError).
	ErrEncode = remote.Register(errors.New("pool: value cannot be encoded"))
	// ErrNotRegistered is returned for a Task that was not made by
	// Register at package level (the worker does not know it).
	ErrNotRegistered = remote.Register(errors.New("pool: task is not registered in the worker"))
)

// WorkerDiedError is the error of a task whose worker process died while
// holding it (killed by a signal such as SIGKILL or SIGSEGV, the OOM
// killer, or an exit from inside the task), after the retries the pool
// was configured with.
type WorkerDiedError struct {
	Pid int // the worker's process id
	// Code is the worker's exit code in Python's convention: the exit
	// status, or minus the signal number.
	Code int
	// Signal is the signal that killed the worker, or 0.
	Signal syscall.Signal
	// Attempts is how many times the task was started.
	Attempts int
	// BeforeReady is true for a worker that died while it was starting,
	// before it reported ready: it held no task (the error of a
	// *StartError).
	BeforeReady bool
	// Err, for a worker that died before it was ready, is how its process
	// ended (a *process.ExitError, with the message of a start-up
	// failure).
	Err error
}

func (e *WorkerDiedError) Error() string {
	if e.BeforeReady {
		if e.Signal != 0 {
			return fmt.Sprintf("pool: worker (pid %d) was killed by signal %d (%v) before it was ready", e.Pid, int(e.Signal), e.Signal)
		}
		return fmt.Sprintf("pool: worker (pid %d) exited before it was ready: %v", e.Pid, e.Err)
	}
	if e.Signal != 0 {
		return fmt.Sprintf("pool: worker (pid %d) was killed by signal %d (%v) while running the task (%d attempts)",
			e.Pid, int(e.Signal), e.Signal, e.Attempts)
	}
	return fmt.Sprintf("pool: worker (pid %d) exited with code %d while running the task (%d attempts)", e.Pid, e.Code, e.Attempts)
}

// Is makes errors.Is(err, ErrWorkerDied) true.
func (e *WorkerDiedError) Is(target error) bool { return target == ErrWorkerDied }

// Unwrap returns Err.
func (e *WorkerDiedError) Unwrap() error { return e.Err }

// TimeoutError is the error of a task that did not return before its
// deadline (the TaskTimeout option): its worker was terminated (SIGTERM,
// then SIGKILL after the kill grace) and replaced.
// errors.Is(err, context.DeadlineExceeded) is true.
type TimeoutError struct {
	Pid     int // the worker that ran the task
	Timeout string
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("pool: task exceeded its deadline (%s); worker pid %d was killed", e.Timeout, e.Pid)
}

// Is makes errors.Is(err, context.DeadlineExceeded) true.
func (e *TimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// RemoteError is a task's error or panic as it reaches the caller from the
// worker process: where it happened (the task, its index, the worker) and
// the Report (ipc/remote) of what the task returned: its text, Go type,
// the worker's stack for a panic, and the registered errors of its chain.
// errors.Is and errors.As match those (remote.Register,
// remote.RegisterType), among them context.DeadlineExceeded,
// context.Canceled, and ErrEncode for a task whose result (or argument)
// could not be encoded.
type RemoteError struct {
	Task  string // the task's registered name
	Index int    // the task's position in its call's input
	Pid   int    // the worker's process id
	remote.Report
}

func (e *RemoteError) Error() string {
	what := "failed"
	if e.Panicked {
		what = "panicked"
	}
	return fmt.Sprintf("pool: task %s[%d] %s in worker pid %d: %s", e.Task, e.Index, what, e.Pid, e.Message)
}

// StartError reports that a worker could not be started (or that its
// initializer failed, or that it died before it was ready: Err is then a
// *WorkerDiedError, errors.Is ErrWorkerDied). New returns it. Once the
// pool runs, a replacement that cannot be started is started again with
// backoff for as long as the pool needs it; only when no worker can run
// the queued tasks and Attempts starts in a row failed do those tasks
// fail with it.
type StartError struct {
	Err error
	// Attempts is how many starts in a row failed, once the pool runs (0
	// from New, which tries once).
	Attempts int
}

func (e *StartError) Error() string {
	if e.Attempts > 1 {
		return fmt.Sprintf("pool: starting a worker failed %d times in a row: %v", e.Attempts, e.Err)
	}
	return "pool: starting a worker: " + e.Err.Error()
}
func (e *StartError) Unwrap() error { return e.Err }
