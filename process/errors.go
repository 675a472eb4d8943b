// SPDX-License-Identifier: Apache-2.0

package process

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/multiproc/multiproc/ipc/remote"
)

var (
	// ErrNotStarted is returned by methods that need a started process.
	ErrNotStarted = errors.New("process: process not started")
	// ErrAlreadyStarted is returned by a second Start ("cannot start a
	// process twice").
	ErrAlreadyStarted = errors.New("process: cannot start a process twice")
	// ErrWaited is returned by a second Wait.
	ErrWaited = errors.New("process: Wait was already called")
	// ErrClosed is returned by every method of a closed Process except
	// Close, ExitCode, Pid and Name.
	ErrClosed = errors.New("process: process object is closed")
	// ErrRunning is returned by Close on a process that has not exited.
	ErrRunning = errors.New("process: process is still running; Join or Kill it before Close")
	// ErrUnknownFunction is returned by Start for a function that is not
	// registered (or registered under another identity), and reported by a
	// child that does not know the function it was asked to run.
	ErrUnknownFunction = errors.New("process: function is not registered")
	// ErrBadArgs is returned by Start when Args do not match the
	// registered function's parameters.
	ErrBadArgs = errors.New("process: arguments do not match the function")
	// ErrStartup matches (errors.Is) an *ExitError of a child that failed
	// before running its function: a bad bootstrap, an unknown function,
	// arguments it could not rebuild, or a main that never called Init.
	ErrStartup = errors.New("process: child failed before running its function")
	// ErrPanicked matches (errors.Is) an *ExitError of a child whose
	// function panicked.
	ErrPanicked = errors.New("process: child function panicked")
	// ErrSignaled matches (errors.Is) an *ExitError of a child killed by a
	// signal (Terminate, Kill, or anything else).
	ErrSignaled = errors.New("process: child was killed by a signal")
	// ErrNoFork is returned by StartMethod("fork"). The Go runtime is
	// always multithreaded, so fork without exec cannot be done safely.
	ErrNoFork = errors.New(`process: start method "fork" is not available in Go: ` +
		`a Go program is always multithreaded, and fork() without exec() would copy ` +
		`only the calling thread and whatever locks the others held. Use "spawn" ` +
		`(the default: the binary re-executes itself, ~1.3 ms) or a forkserver ` +
		`(module github.com/multiproc/multiproc/forkserver: warm processes, one ` +
		`round trip per start); register the functions children run with ` +
		`process.Register and call process.Init() first in main`)
	// ErrUnknownStartMethod is returned by StartMethod for a name it does
	// not know.
	ErrUnknownStartMethod = errors.New("process: unknown start method")
	// ErrDaemonChildren is returned by Start in a daemonic process, as in
	// Python: a daemonic process is killed when its parent goes, and would
	// orphan its own non-daemonic children.
	ErrDaemonChildren = errors.New("process: daemonic processes are not allowed to have children")
	// ErrNoInit is returned by Start in a program that was started as a
	// multiproc child but whose main did not call process.Init() first:
	// it would run main again in every generation (a fork bomb).
	ErrNoInit = errors.New("process: this program was started as a multiproc child " +
		"but main did not call process.Init() first; refusing to start children")
)

// ExitError reports a child that did not exit cleanly: its function
// returned an error or panicked (exit code 1), it asked for a non-zero
// exit code with Exit, it was killed by a signal (Code is minus the
// signal number, as in Python), or it failed before running its function
// (Startup). It is what Wait and Join return for such a child.
type ExitError struct {
	Name string // the process name, e.g. "Process-3"
	Pid  int
	// Code is the exit code in Python's convention: the exit status, or
	// minus the signal number when a signal killed the child.
	Code int
	// Signal is the signal that killed the child, or 0.
	Signal syscall.Signal
	// Startup is true when the child failed before running its function.
	Startup bool
	// Report is what the child's function returned or panicked with: its
	// text, Go type, stack, and the registered errors of its chain (see
	// package ipc/remote), which errors.Is and errors.As match. For a
	// startup failure, Message says what went wrong.
	remote.Report
}

func (e *ExitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "process: %s (pid %d)", e.Name, e.Pid)
	switch {
	case e.Startup:
		fmt.Fprintf(&b, " failed to start (exit code %d)", e.Code)
	case e.Signal != 0:
		fmt.Fprintf(&b, " was killed by signal %d (%v)", int(e.Signal), e.Signal)
	case e.Panicked:
		b.WriteString(" panicked")
	default:
		fmt.Fprintf(&b, " exited with code %d", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrStartup), ErrPanicked and ErrSignaled work on
// an *ExitError. The registered errors of the child's error chain (among
// them context.Canceled and context.DeadlineExceeded) match through
// Report's Unwrap.
func (e *ExitError) Is(target error) bool {
	switch target {
	case ErrStartup:
		return e.Startup
	case ErrPanicked:
		return e.Panicked
	case ErrSignaled:
		return e.Signal != 0
	}
	return false
}

// exitCodeError is the error Exit returns.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("process: exit with code %d", e.code) }

// Exit returns an error that, returned (possibly wrapped) by a child's
// function, makes the child exit with code: 0 is success, anything else
// makes the parent's Wait return an *ExitError with that Code. Deferred
// calls run as usual, unlike os.Exit. Codes are taken modulo 256 by the
// operating system.
func Exit(code int) error { return &exitCodeError{code: code} }
