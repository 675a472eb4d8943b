// SPDX-License-Identifier: Apache-2.0

package kitbench

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
)

func TestMain(m *testing.M) {
	process.Init()
	mptest.Main(m)
}

var empty = process.Register("kitbench.empty", func(ctx context.Context) {})

// TestEmpty keeps the benchmark's function honest in plain test runs.
func TestEmpty(t *testing.T) {
	mptest.CheckChildren(t)
	p := empty.Process()
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}

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
			p := empty.Process()
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
	// spawn.reexec.self: not a kit key, the floor under start.spawn for
	// this binary (see reexec).
	b.Run("spawn.reexec.self", func(b *testing.B) {
		t0 := time.Now()
		n := 0
		for b.Loop() {
			reexec(b)
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
			ps := [2]*process.Process{empty.Process(), empty.Process()}
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

// reexec re-executes this test binary (os/exec) into a mode that exits
// at once, from an init function that runs after every package this
// binary links (process, protobuf, zap...) is initialised: exec, dynamic
// loading, runtime and package initialisation, exit and reap. It is the
// floor under start.spawn for this binary, which the kit's floor
// (spawn.reexec.handshake, a program that links nothing) does not show.
func reexec(b *testing.B) {
	cmd := exec.Command(exe)
	cmd.Env = reexecEnv
	if err := cmd.Run(); err != nil {
		b.Fatal(err)
	}
}

var (
	exe, _    = os.Executable()
	reexecEnv = append(os.Environ(), "KITBENCH_EXIT=1")
)

func init() {
	if os.Getenv("KITBENCH_EXIT") != "" {
		os.Exit(0)
	}
}
