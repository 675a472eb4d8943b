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

// BenchmarkKit holds the benchmark that stands for the baseline kit's
// start.forkserver key: start+join of an empty registered function through
// the forkserver Starter, in ms.
//
// Each iteration first waits (untimed by the metric) until the warm set is
// full again, then times Start+Join alone: the latency a caller sees when
// a warm process is ready, which is what a forkserver is for. The
// replacement's exec runs in the background meanwhile, on the same CPUs.
// The metric is the median, which a loaded machine's outliers move least
// (FS_BENCH_DIST=1 logs the distribution). BenchmarkBackToBack measures
// the other case, BenchmarkFloorWakeExit the floor.
func BenchmarkKit(b *testing.B) {
	b.Run("start.forkserver", func(b *testing.B) {
		s, err := New(Size(2))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		b.ReportAllocs()
		var timed []time.Duration
		for b.Loop() {
			if err := s.Warm(ctx); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			p := fnEmpty.Process()
			p.Starter = s
			if err := p.Start(ctx); err != nil {
				b.Fatal(err)
			}
			if err := p.Wait(); err != nil {
				b.Fatal(err)
			}
			timed = append(timed, time.Since(t0))
		}
		slices.Sort(timed)
		if os.Getenv("FS_BENCH_DIST") != "" {
			var sum time.Duration
			for _, d := range timed {
				sum += d
			}
			b.Logf("n=%d mean %v min %v p10 %v p50 %v p90 %v max %v", len(timed), sum/time.Duration(len(timed)),
				timed[0], timed[len(timed)/10], timed[len(timed)/2], timed[len(timed)*9/10], timed[len(timed)-1])
		}
		b.ReportMetric(float64(timed[len(timed)/2])/1e6, "ms")
	})
}

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
