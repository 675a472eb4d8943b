// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
)

func TestMain(m *testing.M) {
	process.Init()
	mptest.Main(m)
}

// TestQuickstart runs the README's example as it is.
func TestQuickstart(t *testing.T) {
	mptest.CheckChildren(t)
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "[1 4 9 16 25]\n"; got != want {
		t.Fatalf("quickstart printed %q, want %q", got, want)
	}
}
