// SPDX-License-Identifier: Apache-2.0

package processtest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/process/processtest"
	"github.com/multiproc/multiproc/process/starter"
)

func TestMain(m *testing.M) { processtest.Main(m) }

// counting is a Starter of its own (it lets Spawn do the work and counts
// the children), as a user of this package would write one.
type counting struct{ n atomic.Int64 }

func (c *counting) Name() string { return "counting" }

func (c *counting) Start(ctx context.Context, req *starter.Request) (starter.Child, error) {
	c.n.Add(1)
	return process.Spawn.Start(ctx, req)
}

var countingMethod = processtest.RegisterMethod("counting", func() (process.Starter, error) { return &counting{}, nil })

// The suite with a Starter that is neither Spawn nor a forkserver: its
// name must be what the children see.
func TestCountingStarter(t *testing.T) {
	processtest.TestStarter(t, countingMethod)
}

// broken wraps Spawn and gets two things wrong: a child's exit code 3 is
// reported as 4, and its stdout goes to its stderr.
type broken struct{}

func (broken) Name() string { return "broken" }

func (broken) Start(ctx context.Context, req *starter.Request) (starter.Child, error) {
	r := *req
	r.Stdout = r.Stderr
	c, err := process.Spawn.Start(ctx, &r)
	if err != nil {
		return nil, err
	}
	return brokenChild{c}, nil
}

type brokenChild struct{ starter.Child }

func (c brokenChild) Wait(ctx context.Context) (int, error) {
	code, err := c.Child.Wait(ctx)
	if err == nil && code == 3 {
		code = 4
	}
	return code, err
}

var brokenMethod = processtest.RegisterMethod("broken", func() (process.Starter, error) { return broken{}, nil })

// TestBrokenStarter is run by TestSuiteCatchesBrokenStarter in a test
// binary of its own (it must fail).
func TestBrokenStarter(t *testing.T) {
	if os.Getenv("PROCESSTEST_BROKEN") == "" {
		t.Skip("run by TestSuiteCatchesBrokenStarter")
	}
	processtest.TestStarter(t, brokenMethod)
}

// The suite fails a Starter that gets exit codes or stdio wrong, in the
// subtests about them and not in the others.
func TestSuiteCatchesBrokenStarter(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestBrokenStarter$/^(ExitCodes|Stdio|Lifecycle)$", "-test.v")
	cmd.Env = append(os.Environ(), "PROCESSTEST_BROKEN=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the suite passed a broken Starter:\n%s", out)
	}
	for _, want := range []string{
		"--- FAIL: TestBrokenStarter/ExitCodes/exit3",
		"--- PASS: TestBrokenStarter/ExitCodes/exit255",
		"--- FAIL: TestBrokenStarter/Stdio",
		"--- PASS: TestBrokenStarter/Lifecycle",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in the output:\n%s", want, out)
		}
	}
}

func TestRegisterMethodPanics(t *testing.T) {
	newSpawn := func() (process.Starter, error) { return process.Spawn, nil }
	for _, tt := range []struct {
		name string
		fn   func() (process.Starter, error)
	}{
		{"", newSpawn},
		{"spawn", newSpawn}, // registered by processtest
		{"counting", newSpawn},
		{"nil function", nil},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterMethod(%q) did not panic", tt.name)
				}
			}()
			processtest.RegisterMethod(tt.name, tt.fn)
		}()
	}
}

func TestMethodNew(t *testing.T) {
	s, closeS, err := countingMethod.New()
	if err != nil || s.Name() != "counting" || closeS() != nil {
		t.Fatalf("New: %v, %v", s, err)
	}
	if processtest.Spawn.Name() != "spawn" {
		t.Fatal(processtest.Spawn.Name())
	}
	if s, _, err := processtest.Spawn.New(); err != nil || s != process.Spawn {
		t.Fatalf("Spawn.New: %v, %v", s, err)
	}
}
