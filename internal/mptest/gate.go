// SPDX-License-Identifier: Apache-2.0

package mptest

import (
	"context"
	"os"
	"testing"
	"time"
)

// A gate is a file that a test creates to let go the tasks it holds:
// tasks running in other processes (pool workers, cluster agents) wait
// for it, so that which task is running, queued or done is decided by the
// test and never by timing.

// WaitGate waits until the file gate exists or ctx ends.
func WaitGate(ctx context.Context, gate string) error {
	for {
		if _, err := os.Stat(gate); err == nil {
			return nil
		}
		select {
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Hold is the body of a task the test holds: it says it runs by
// creating gate+".running" (see WaitFile), then waits for the gate.
func Hold(ctx context.Context, gate string) error {
	if err := os.WriteFile(gate+".running", nil, 0o600); err != nil {
		return err
	}
	return WaitGate(ctx, gate)
}

// OpenGate creates the file gate.
func OpenGate(t testing.TB, gate string) {
	t.Helper()
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// WaitFile waits until path exists, failing t after LeakCeiling*2 (a
// generous ceiling that only bounds a hang, not a timing condition).
func WaitFile(t testing.TB, path string) {
	t.Helper()
	for deadline := time.Now().Add(2 * LeakCeiling); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
	}
}
