// SPDX-License-Identifier: Apache-2.0

package starter

import (
	"context"
	"os"
	"syscall"
)

// Request is everything a child needs, prepared by process.Process.Start
// and handed to a Starter.
type Request struct {
	// Name is the child's process name, for diagnostics.
	Name string
	// Bootstrap is the encoded bootstrap message (multiproc.process.v1.
	// Bootstrap) that the child must receive; RunChild decodes it.
	Bootstrap []byte
	// Files is the child's inherited-file table, in order: the indexes in
	// the bootstrap message refer to it. The Starter must give the child
	// these files (dup'd, passed by SCM_RIGHTS, ...), and nothing else.
	Files []*os.File
	// Env is the complete environment of an exec'd child (the parent's,
	// plus Process.Env). A Starter that cannot set the environment of the
	// process it uses may ignore it: the bootstrap message repeats
	// Process.Env and the child applies it.
	Env []string
	// Stdin, Stdout and Stderr become the child's fds 0, 1 and 2. A nil
	// Stdin means /dev/null, which the Starter provides (a forkserver's
	// warm processes have it open already); Stdout and Stderr are never
	// nil.
	Stdin, Stdout, Stderr *os.File
	// Daemon asks that the child also get a death signal from the kernel
	// (PR_SET_PDEATHSIG, SIGTERM) when its parent dies, in addition to the
	// lifeline in the bootstrap message.
	Daemon bool
}

// StatusSockets is implemented by a Starter that makes ahead of time, off
// the path of a start, the socketpair that process.Process.Start otherwise
// makes for each child (its status reports and its lifeline): creating one
// is tens of microseconds, a good part of a forkserver's start.
type StatusSockets interface {
	// StatusSocketpair returns a connected unix stream socketpair, both
	// ends close-on-exec, fds[0] (the parent's end) non-blocking and fds[1]
	// (the child's) blocking; the caller owns both. ok is false when none
	// is ready, and the caller makes its own.
	StatusSocketpair() (fds [2]int, ok bool)
}

// A Child is a started child process, as a Starter reports it. All methods
// are safe for concurrent use, except that Release must be the last call.
type Child interface {
	// Pid is the child's process id.
	Pid() int
	// Wait waits for the child to exit and returns its exit code in
	// Python's convention (the exit status, or minus the signal number).
	// It reaps the child. When ctx is done it returns ctx.Err(), after one
	// last check that does not block: so a done ctx polls. Once it has
	// returned a code it returns the same code again.
	Wait(ctx context.Context) (code int, err error)
	// Signal sends sig to the child; a child that has already exited is
	// not an error (and pid reuse cannot misdirect the signal).
	Signal(sig syscall.Signal) error
	// WaitFD returns a file descriptor that becomes readable when the
	// child exits (ipc.Wait's Waitable), valid until Release; ready is
	// true when the child is known to have exited.
	WaitFD() (fd uintptr, ready bool, err error)
	// Release frees what the Child holds (its pidfd). The Process calls it
	// once, after the child has been reaped or when Start fails.
	Release() error
}
