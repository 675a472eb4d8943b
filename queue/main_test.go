// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"context"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/syncprim"
)

func TestMain(m *testing.M) {
	process.Init()
	// syncprim's default arena (used by the tests' Events and Barriers)
	// lives as long as the process: create it before any leak check.
	if e, err := syncprim.NewEvent(); err == nil {
		e.Close()
	}
	mptest.Main(m)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func leakChecks(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckChildren(t)
	mptest.CheckShm(t, "psm_") // queues live in memfds: a named entry would be a leak of ours
}

func must[V any](t testing.TB) func(V, error) V {
	return func(v V, err error) V {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
