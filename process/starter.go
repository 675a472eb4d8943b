// SPDX-License-Identifier: Apache-2.0

package process

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
)

// A Starter turns a fully prepared start request into a running child.
// Spawn (re-executing the running binary) is the default; the forkserver
// module provides one that hands the request to a warm, pre-started
// process over a unix socket (the files by SCM_RIGHTS), which then calls
// RunChild.
//
// Start must not close or keep req's files: the Process closes its copies
// once Start returns. A Starter is used by many Processes at once and must
// be safe for concurrent use.
type Starter interface {
	// Name is the start method's name ("spawn", "forkserver").
	Name() string
	// Start starts the child described by req. ctx bounds the start only,
	// never the child's life.
	Start(ctx context.Context, req *StartRequest) (Child, error)
}

// defaultStarter holds the Starter set by SetDefaultStarter, boxed (an
// atomic.Pointer needs a concrete type); nil means Spawn.
var defaultStarter atomic.Pointer[starterBox]

type starterBox struct{ s Starter }

// SetDefaultStarter makes s the start method of every Process started
// from now on whose Starter field is nil, and so of the pools and managers
// that are not given a Starter: Python's
// multiprocessing.set_start_method, for this process. nil restores Spawn.
// For example, to start every child from warm processes:
//
//	fs, err := forkserver.New()
//	...
//	process.SetDefaultStarter(fs)
//	defer fs.Close()
//
// It is safe for concurrent use; Processes already started keep the
// Starter they were started with. It is not inherited: a child that
// starts processes of its own uses Spawn unless it sets a default itself.
func SetDefaultStarter(s Starter) {
	if s == nil {
		defaultStarter.Store(nil)
		return
	}
	defaultStarter.Store(&starterBox{s})
}

// DefaultStarter returns the Starter used when none is given: the one set
// by SetDefaultStarter, or Spawn.
func DefaultStarter() Starter {
	if b := defaultStarter.Load(); b != nil {
		return b.s
	}
	return Spawn
}

// StartRequest is everything a child needs, prepared by Process.Start.
type StartRequest struct {
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
	// Stdin, Stdout and Stderr become the child's fds 0, 1 and 2.
	Stdin, Stdout, Stderr *os.File
	// Daemon asks that the child also get a death signal from the kernel
	// (PR_SET_PDEATHSIG, SIGTERM) when its parent dies, in addition to the
	// lifeline in the bootstrap message.
	Daemon bool
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

// Spawn is the default start method: the child is a re-execution of the
// running binary (/proc/self/exe), in which process.Init() (first thing
// in main) reads its bootstrap message from an inherited memfd and runs
// the registered function. The child is watched through a pidfd.
var Spawn Starter = spawnStarter{}

type spawnStarter struct{}

func (spawnStarter) Name() string { return "spawn" }

// StartMethod returns the Starter for a start method name: "spawn" (or
// "") returns Spawn. "fork" returns ErrNoFork, which explains why Go has no
// fork start method and what to use; "forkserver" returns an error that
// points to the forkserver module (which process cannot import).
func StartMethod(name string) (Starter, error) {
	switch name {
	case "", "spawn":
		return Spawn, nil
	case "fork":
		return nil, ErrNoFork
	case "forkserver":
		return nil, fmt.Errorf(`%w "forkserver": it lives in module github.com/multiproc/multiproc/forkserver; `+
			`create one there and put it in Process.Starter`, ErrUnknownStartMethod)
	}
	return nil, fmt.Errorf("%w %q (known: spawn; forkserver in its own module; fork cannot exist in Go)", ErrUnknownStartMethod, name)
}

// AllStartMethods lists the start methods this package provides, default
// first (Python's get_all_start_methods).
func AllStartMethods() []string { return []string{"spawn"} }
