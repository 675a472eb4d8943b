// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/manager"
	"github.com/multiproc/multiproc/process"
)

// A manager server SIGKILLed with calls in flight: every call in flight
// and every later call fails promptly with ErrClosed (none waits for its
// context), and Err says why.
func TestServerKilledWithCallsInFlight(t *testing.T) {
	mptest.CheckChildren(t)
	ctx := ctxT(t)
	m, err := manager.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	q, err := manager.NewQueue[int](ctx, m.Client, 0)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := manager.NewEvent(ctx, m.Client)
	if err != nil {
		t.Fatal(err)
	}
	// The calls in flight wait with no deadline of their own: only the
	// server's death can end them.
	const gets = 4
	errc := make(chan error, gets+1)
	for range gets {
		go func() { _, err := q.Get(context.Background()); errc <- err }()
	}
	go func() { errc <- ev.Wait(context.Background()) }()
	mptest.WaitBlockedN(t, "manager.(*Client).wait", gets+1)
	// Requests on one connection are read in order: once the ping is
	// answered, the server holds every call above.
	if err := m.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	pid := m.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := range gets + 1 {
		select {
		case err := <-errc:
			if !errors.Is(err, manager.ErrClosed) {
				t.Errorf("call %d in flight when the server died: %v, want ErrClosed", i, err)
			}
		case <-ctx.Done():
			t.Fatalf("%d of %d calls in flight still waiting after the server was killed", gets+1-i, gets+1)
		}
	}
	cerr := m.Err()
	if cerr == nil || !errors.Is(cerr, manager.ErrClosed) {
		t.Fatalf("Err() after the server died: %v, want ErrClosed", cerr)
	}
	for _, want := range []string{"connection to the server lost", "server process ended", "killed by signal 9"} {
		if !strings.Contains(cerr.Error(), want) {
			t.Errorf("Err() = %q, does not say %q", cerr, want)
		}
	}
	var ee *process.ExitError
	if !errors.As(cerr, &ee) || ee.Pid != pid || ee.Signal != syscall.SIGKILL {
		t.Errorf("Err() = %v, want it to wrap the server's *process.ExitError (pid %d, SIGKILL)", cerr, pid)
	}
	// Later calls fail at once with the same error, whatever their kind.
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	later := map[string]error{
		"Put":    q.Put(lctx, 1),
		"Wait":   ev.Wait(lctx),
		"Ping":   m.Ping(lctx),
		"Create": func() error { _, err := manager.NewDict[string, int](lctx, m.Client); return err }(),
	}
	for name, err := range later {
		if !errors.Is(err, manager.ErrClosed) || lctx.Err() != nil {
			t.Errorf("%s after the server died: %v, want ErrClosed at once", name, err)
		}
	}
	// Shutdown reports the death, and does not hang.
	if err := m.Shutdown(ctx); err == nil {
		t.Error("Shutdown of a killed server returned nil")
	}
}
