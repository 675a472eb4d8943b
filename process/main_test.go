// SPDX-License-Identifier: Apache-2.0

package process_test

import (
	"context"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
)

func TestMain(m *testing.M) {
	process.Init()
	mptest.Main(m)
}

// The behavioural tests of Process live in package processtest, which
// registers the functions they run in children; the tests here are about
// what is the process package's alone (registration, start methods,
// Spawn's start-up guard).
var fnEmpty = process.Register("test.empty", func(ctx context.Context) {})

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
