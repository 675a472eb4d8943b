// SPDX-License-Identifier: Apache-2.0

package process

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/multiproc/multiproc/process/starter"
)

// A Starter turns a fully prepared start request into a running child.
// Spawn (re-executing the running binary) is the default; the forkserver
// module provides one that hands the request to a warm, pre-started
// process over a unix socket (the files by SCM_RIGHTS), which then calls
// starter.RunChild. Package process/starter has what a Starter's author
// needs; package process/processtest checks a Starter against Process's
// behaviour.
//
// Start must not close or keep req's files: the Process closes its copies
// once Start returns. A Starter is used by many Processes at once and must
// be safe for concurrent use.
type Starter interface {
	// Name is the start method's name ("spawn", "forkserver").
	Name() string
	// Start starts the child described by req. ctx bounds the start only,
	// never the child's life.
	Start(ctx context.Context, req *starter.Request) (starter.Child, error)
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
