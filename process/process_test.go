// SPDX-License-Identifier: Apache-2.0

package process_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/process/processtest"
)

// The conformance suite (exit codes, signals, Join, arguments and
// handles, stdio, descriptors, trees of processes, daemons, Shutdown...)
// with the default start method.
func TestSpawn(t *testing.T) {
	processtest.TestStarter(t, processtest.Spawn)
}

func TestStartMethod(t *testing.T) {
	if _, err := process.StartMethod("fork"); !errors.Is(err, process.ErrNoFork) || !strings.Contains(err.Error(), "spawn") {
		t.Fatalf("StartMethod(fork): %v", err)
	}
	if _, err := process.StartMethod("forkserver"); !errors.Is(err, process.ErrUnknownStartMethod) || !strings.Contains(err.Error(), "multiproc/forkserver") {
		t.Fatalf("StartMethod(forkserver): %v", err)
	}
	if _, err := process.StartMethod("threads"); !errors.Is(err, process.ErrUnknownStartMethod) {
		t.Fatalf("StartMethod(threads): %v", err)
	}
	for _, name := range []string{"", "spawn"} {
		if s, err := process.StartMethod(name); err != nil || s != process.Spawn || s.Name() != "spawn" {
			t.Fatalf("StartMethod(%q): %v %v", name, s, err)
		}
	}
	if got := process.AllStartMethods(); !slices.Equal(got, []string{"spawn"}) {
		t.Fatalf("AllStartMethods: %v", got)
	}
}

func TestRegisterPanics(t *testing.T) {
	tests := []struct {
		name string
		fn   any
		want string
	}{
		{"not a func", 42, "not a function"},
		{"no ctx", func(int) error { return nil }, "first parameter must be a context.Context"},
		{"bad return", func(context.Context) int { return 0 }, "must return error or nothing"},
		{"two returns", func(context.Context) (int, error) { return 0, nil }, "must return error or nothing"},
		{"variadic", func(context.Context, ...int) {}, "variadic"},
		{"interface", func(context.Context, any) {}, "interface type"},
		{"chan", func(context.Context, chan int) {}, "cannot travel"},
		{"duplicate", func(context.Context) {}, "already registered"},
		{"nil func", (func(context.Context))(nil), "nil function"},
		// TestMain called process.Init: registering now, as from main, is the
		// mistake of a function the children will not know.
		{"after Init", func(context.Context) {}, "called after process.Init(): register functions at package level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, tt.want) {
					t.Fatalf("panic %v, want one containing %q", r, tt.want)
				}
			}()
			name := "test.reg." + tt.name
			if tt.name == "duplicate" {
				name = "test.empty"
			}
			process.Register(name, tt.fn)
		})
	}
}

// A program that was started as a child but never called Init refuses to
// start children of its own (Python's TestNoForkBomb).
func TestNoInitGuard(t *testing.T) {
	t.Setenv("MULTIPROC_CHILD", "1000:1") // no such fds: not a real child, so Start returns (TestNoInitOnce covers a real one)
	if err := fnEmpty.Process().Start(ctxT(t)); !errors.Is(err, process.ErrNoInit) {
		t.Fatalf("Start: %v, want ErrNoInit", err)
	}
}

func TestCPUCount(t *testing.T) {
	n := process.CPUCount()
	if n < 1 {
		t.Fatalf("CPUCount %d", n)
	}
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) == nil && n > set.Count() {
		t.Fatalf("CPUCount %d exceeds the affinity mask's %d", n, set.Count())
	}
}
