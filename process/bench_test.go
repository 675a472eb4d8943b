package process_test

import (
	"context"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
)

// BenchmarkKit holds the benchmarks that stand for keys of the baseline
// kit (../shared/bench): process start+join latency.
func BenchmarkKit(b *testing.B) {
	ctx := context.Background()
	// start.spawn: Process(target=empty) start+join.
	b.Run("start.spawn", func(b *testing.B) {
		b.ReportAllocs()
		t0 := time.Now()
		n := 0
		for b.Loop() {
			p := fnEmpty.Process()
			if err := p.Start(ctx); err != nil {
				b.Fatal(err)
			}
			if err := p.Wait(); err != nil {
				b.Fatal(err)
			}
			n++
		}
		b.ReportMetric(float64(time.Since(t0))/float64(n)/1e6, "ms")
	})
	// start.spawn.parallel2: start two, then join both (ms per pair).
	b.Run("start.spawn.parallel2", func(b *testing.B) {
		b.ReportAllocs()
		t0 := time.Now()
		n := 0
		for b.Loop() {
			ps := [2]*process.Process{fnEmpty.Process(), fnEmpty.Process()}
			for _, p := range ps {
				if err := p.Start(ctx); err != nil {
					b.Fatal(err)
				}
			}
			for _, p := range ps {
				if err := p.Wait(); err != nil {
					b.Fatal(err)
				}
			}
			n++
		}
		b.ReportMetric(float64(time.Since(t0))/float64(n)/1e6, "ms")
	})
}

var _ = mptest.RegisterHelper("process.exit", func() {})

// BenchmarkReexecFloor re-executes this test binary into a helper that
// exits at once: the floor under start.spawn for this binary's size and
// package initialisation.
func BenchmarkReexecFloor(b *testing.B) {
	for b.Loop() {
		cmd := mptest.HelperCmd(b, "process.exit")
		cmd.Stderr = nil
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}
