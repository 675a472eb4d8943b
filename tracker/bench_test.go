// SPDX-License-Identifier: Apache-2.0

package tracker

import (
	"context"
	"testing"
)

// BenchmarkRegisterUnregister measures what tracking adds to creating and
// unlinking a named resource: two one-write messages on the pipe.
func BenchmarkRegisterUnregister(b *testing.B) {
	ctx := context.Background()
	if err := EnsureRunning(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := Register(ctx, SharedMemory, "psm_bench0000"); err != nil {
			b.Fatal(err)
		}
		if err := Unregister(ctx, SharedMemory, "psm_bench0000"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStart measures starting a tracker (a re-execution of the test
// binary up to its readiness message), which the first Create of a tree
// pays.
func BenchmarkStart(b *testing.B) {
	for b.Loop() {
		client.Lock()
		c, err := startTracker(context.Background())
		if err == nil {
			dropConn(c, true) // EOF: the tracker exits; reap it
		}
		client.Unlock()
		if err != nil {
			b.Fatal(err)
		}
	}
}
