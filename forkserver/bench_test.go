package forkserver

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

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
// BenchmarkBackToBack measures the other case.
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
			b.Logf("n=%d min %v p10 %v p50 %v p90 %v max %v", len(timed), timed[0], timed[len(timed)/10], timed[len(timed)/2], timed[len(timed)*9/10], timed[len(timed)-1])
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
