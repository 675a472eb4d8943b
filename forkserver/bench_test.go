// SPDX-License-Identifier: Apache-2.0

package forkserver

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
)

// The start.forkserver key of the baseline kit is measured in
// tools/internal/startbench, in a binary that links no test-only package
// (a warm process is a re-execution of the binary measuring it). The
// benchmarks here compare the other cases and the floor.

// BenchmarkBackToBack starts and joins children as fast as it can, so the
// warm set is always empty and each start waits for a new warm process:
// the sustained rate is that of exec'ing the binary, as with Spawn.
func BenchmarkBackToBack(b *testing.B) {
	s, err := New(Size(2))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Warm(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		p := fnEmpty.Process()
		p.Starter = s
		if err := p.Start(ctx); err != nil {
			b.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSpawn is the same start+join with process.Spawn, in this test
// binary, for comparison.
func BenchmarkSpawn(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p := fnEmpty.Process()
		p.Starter = process.Spawn
		if err := p.Start(ctx); err != nil {
			b.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}

// The floor under start.forkserver on this machine: an idle process (this
// test binary, re-executed as a helper, initialised and blocked in a
// read) is woken by one byte, exits, and is reaped by its parent. That is
// the least any start through a pre-started process costs: one wake-up
// of the process, its exit, one wake-up of the parent.
var _ = mptest.RegisterHelper("fs.floor", func() {
	os.Stdout.Write([]byte{'r'})
	var b [1]byte
	os.Stdin.Read(b[:])
	os.Exit(0)
})

func BenchmarkFloorWakeExit(b *testing.B) {
	var timed []time.Duration
	for b.Loop() {
		cmd := mptest.HelperCmd(b, "fs.floor")
		w, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		r, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		var ready [1]byte
		if _, err := r.Read(ready[:]); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		w.Write([]byte{1})
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		timed = append(timed, time.Since(t0))
	}
	slices.Sort(timed)
	b.ReportMetric(float64(timed[len(timed)/2])/1e6, "ms(p50)")
}
