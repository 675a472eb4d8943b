// SPDX-License-Identifier: Apache-2.0

package process

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"slices"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Info describes the current process, like Python's current_process().
type Info struct {
	// Name is "MainProcess" in the main process, else the child's name.
	Name string
	Pid  int
	// Ident is the identity path: empty in the main process, [3] for its
	// third child, [1, 2] for the second child of the first child.
	Ident []uint32
	// Daemon is true in a daemonic child.
	Daemon bool
	// Authkey is the process tree's 32-byte authentication key (see
	// Authkey).
	Authkey []byte
	// StartMethod is how this process was started ("spawn", ...), or ""
	// in the main process.
	StartMethod string
	// Logger is, in a child whose parent's Process.Logger was enabled, a
	// logger writing to stderr at the parent logger's level; otherwise a
	// no-op logger.
	Logger *zap.Logger
}

type selfState struct {
	child    bool
	name     string
	ident    []uint32
	daemon   bool
	method   string
	level    zapcore.Level
	parent   *ParentProcess
	logOnce  sync.Once
	logger   *zap.Logger
	authOnce sync.Once
	authkey  []byte
}

// self is set by RunChild before the function runs, and never after.
var self = &selfState{name: "MainProcess", level: zapcore.InvalidLevel}

func current() *selfState { return self }

// Current describes the current process.
func Current() Info {
	s := current()
	return Info{
		Name:        s.name,
		Pid:         os.Getpid(),
		Ident:       slices.Clone(s.ident),
		Daemon:      s.daemon,
		Authkey:     Authkey(),
		StartMethod: s.method,
		Logger:      s.log(),
	}
}

func (s *selfState) log() *zap.Logger {
	s.logOnce.Do(func() {
		s.logger = zap.NewNop()
		if !s.child || s.level < zapcore.DebugLevel || s.level > zapcore.FatalLevel {
			return
		}
		cfg := zap.NewProductionConfig()
		cfg.Level = zap.NewAtomicLevelAt(s.level)
		cfg.Encoding = "console"
		cfg.Sampling = nil
		cfg.OutputPaths = []string{"stderr"}
		if l, err := cfg.Build(); err == nil {
			s.logger = l.Named(s.name).With(zap.Int("pid", os.Getpid()))
		}
	})
	return s.logger
}

// Authkey returns the process tree's authentication key: 32 random bytes
// made in the main process and inherited by every child (ipc's
// Listener/Dial handshake uses it by default in the modules above). The
// returned slice is a copy.
func Authkey() []byte {
	s := current()
	s.authOnce.Do(func() {
		if s.authkey != nil {
			return
		}
		s.authkey = make([]byte, 32)
		rand.Read(s.authkey)
	})
	return slices.Clone(s.authkey)
}

// ParentProcess is a child's view of its parent (Python's
// parent_process()).
type ParentProcess struct {
	Pid int
	// StartTime is the parent's start time in clock ticks after boot
	// (/proc/<pid>/stat field 22): with Pid it names the parent for good,
	// even after the pid is reused.
	StartTime uint64
	lifeline  int           // the status socket: EOF once the parent is gone; -1 if none
	gone      chan struct{} // closed when the lifeline reads EOF
	watch     func()        // starts the goroutine that closes gone, once
}

// Done returns a channel that is closed when the parent is gone (its end
// of the lifeline closed, however it died). It is nil, blocking forever,
// when this process has no lifeline.
func (pp *ParentProcess) Done() <-chan struct{} {
	if pp == nil {
		return nil
	}
	if pp.watch != nil {
		pp.watch()
	}
	return pp.gone
}

// Parent returns the parent of a child process, or nil in the main
// process.
func Parent() *ParentProcess { return current().parent }

// Alive reports whether the parent is still running. In a child started
// by this package it checks the lifeline (a socket only the parent holds
// the other end of), so it turns false as soon as the parent is gone,
// however it died; otherwise it checks that a process with the parent's
// pid and start time exists.
func (pp *ParentProcess) Alive() bool {
	if pp == nil {
		return false
	}
	if pp.lifeline >= 0 {
		return !lifelineBroken(pp.lifeline)
	}
	st, err := procStartTime(pp.Pid)
	return err == nil && (pp.StartTime == 0 || st == pp.StartTime)
}

// ActiveChildren returns the children started by this process that have
// not exited yet (Python's active_children()). Like Python's, it reaps the
// children that have exited since the last look.
func ActiveChildren() []*Process {
	active.Lock()
	kids := make([]*Process, 0, len(active.m))
	for p := range active.m {
		kids = append(kids, p)
	}
	active.Unlock()
	alive := kids[:0]
	for _, p := range kids {
		if done, _ := p.wait(doneCtx, false); !done {
			alive = append(alive, p)
		}
	}
	slices.SortFunc(alive, func(a, b *Process) int { return a.pid - b.pid })
	return alive
}

// Shutdown does what Python does when the main process exits: it sends
// SIGTERM to every daemonic child still running, then waits for all the
// children (daemonic or not) to exit. Go has no atexit, so call it
// yourself before main returns:
//
//	func main() {
//		process.Init()
//		defer process.Shutdown(context.Background())
//		...
//	}
//
// (os.Exit skips deferred calls; call Shutdown before it.) It returns
// ctx.Err() when ctx ends before every child has exited; the children
// keep running then (Kill them or let their lifelines end them). A child
// does the same on its own children when its function returns, so
// grandchildren are handled at every level. Shutdown does not Close the
// children.
func Shutdown(ctx context.Context) error {
	active.Lock()
	kids := make([]*Process, 0, len(active.m))
	for p := range active.m {
		kids = append(kids, p)
	}
	active.Unlock()
	for _, p := range kids {
		if p.Daemon {
			p.Terminate()
		}
	}
	for _, p := range kids {
		if err := p.Join(ctx); err != nil && ctx.Err() != nil && !p.isDone() {
			return fmt.Errorf("process: shutdown: %d children still running: %w", len(ActiveChildren()), ctx.Err())
		}
	}
	return nil
}

// ----------------------------------------------------- inherited handles
