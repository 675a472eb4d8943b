// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
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

// TestPoolInit: manager proxies (a Lock and a Dict) reach every pool
// worker, recycled ones included, through the Initializer, and the
// counts updated under the lock are exact.
func TestPoolInit(t *testing.T) {
	mptest.CheckChildren(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "a=6 b=3 c=3 \n"; got != want {
		t.Fatalf("printed %q, want %q", got, want)
	}
}
