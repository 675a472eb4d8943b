// SPDX-License-Identifier: Apache-2.0

package startbench

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/forkserver"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/manager"
	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/process"
)

var (
	square = pool.Register("startbench.square", func(_ context.Context, x int) (int, error) { return x * x, nil })
	empty  = process.Register("startbench.empty", func(context.Context) error { return nil })
	// readyFn tells its parent that it runs, first thing.
	readyFn = process.Register1("startbench.ready", func(ctx context.Context, c *ipc.Conn) error {
		defer c.Close()
		return c.SendBytes(ctx, []byte{1})
	})
)

// BenchmarkKit holds the benchmarks whose figures are bound by starting
// processes: the kit's start.forkserver, pool.lifecycle and
// manager.lifecycle, and beside them (no CPython counterpart; mp bench
// reports them against the exec floor) how long a pool takes to replace a
// worker that died, with each start method, and the pool and manager
// lifecycles through the forkserver.
//
// They live here, not in their modules' test binaries, because a child is
// a re-execution of the binary that starts it: a module's test binary
// links test-only packages whose initialisation every child would pay
// (go-cmp alone compiles regular expressions at init, 0.4 ms measured), a
// cost no program using multiproc has. This binary links the modules, the
// standard testing package and internal/mptest only.
//
// The forkserver figures follow one convention: before each timed
// iteration the warm set is filled again (untimed), so they are the
// latency a caller sees when warm processes are ready, which is what a
// forkserver is for; run back to back, a forkserver cannot replace more
// processes per second than the machine can exec. Each of them is the
// median of the iterations.
func BenchmarkKit(b *testing.B) {
	ctx := context.Background()
	// start.forkserver (kit key): start+join of an empty function through
	// a forkserver whose warm set is full.
	b.Run("start.forkserver", func(b *testing.B) {
		fs := newStarter(b)
		b.ReportAllocs()
		timed := make([]time.Duration, 0, 64)
		for b.Loop() {
			warm(b, fs)
			t0 := time.Now()
			p := empty.Process()
			p.Starter = fs
			if err := p.Start(ctx); err != nil {
				b.Fatal(err)
			}
			if err := p.Wait(); err != nil {
				b.Fatal(err)
			}
			timed = append(timed, time.Since(t0))
		}
		report(b, timed)
	})
	// start.forkserver.ready and start.spawn.ready: from Start until the
	// child's function runs, as the child reports it with a message on a
	// pipe it was given, not by its exit: what a warm process buys, without
	// the cost of a process's exit and reaping (which the join of
	// start.forkserver includes). The median; the join is untimed.
	for _, method := range []string{"forkserver", "spawn"} {
		b.Run("start."+method+".ready", func(b *testing.B) {
			var fs *forkserver.Starter
			if method == "forkserver" {
				fs = newStarter(b)
			}
			timed := make([]time.Duration, 0, 64)
			for b.Loop() {
				if fs != nil {
					warm(b, fs)
				}
				mine, theirs, err := ipc.Pipe(false)
				if err != nil {
					b.Fatal(err)
				}
				p := readyFn.Process(theirs)
				if fs != nil {
					p.Starter = fs
				}
				t0 := time.Now()
				if err := p.Start(ctx); err != nil {
					b.Fatal(err)
				}
				if _, err := mine.RecvBytes(ctx); err != nil {
					b.Fatal(err)
				}
				timed = append(timed, time.Since(t0))
				b.StopTimer()
				theirs.Close()
				mine.Close()
				if err := p.Wait(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			report(b, timed)
		})
	}
	// pool.lifecycle (kit key): Pool(2) made, map of 2 items, closed and
	// joined, with the default start method; the mean, back to back.
	b.Run("pool.lifecycle", func(b *testing.B) {
		b.ReportAllocs()
		var total time.Duration
		for b.Loop() {
			t0 := time.Now()
			p, err := pool.New(ctx, pool.Workers(2))
			if err != nil {
				b.Fatal(err)
			}
			if got, err := square.Map(ctx, p, []int{1, 2}); err != nil || !slices.Equal(got, []int{1, 4}) {
				b.Fatalf("Map = %v, %v", got, err)
			}
			if err := p.Wait(); err != nil {
				b.Fatal(err)
			}
			total += time.Since(t0)
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms")
	})
	// manager.lifecycle (kit key): manager.Start and Shutdown, the mean,
	// back to back.
	b.Run("manager.lifecycle", func(b *testing.B) {
		b.ReportAllocs()
		var total time.Duration
		for b.Loop() {
			t0 := time.Now()
			m, err := manager.Start(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Shutdown(ctx); err != nil {
				b.Fatal(err)
			}
			total += time.Since(t0)
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms")
	})
	for _, method := range []string{"spawn", "forkserver"} {
		b.Run("pool.replace."+method, func(b *testing.B) {
			benchReplace(b, method == "forkserver")
		})
	}
	b.Run("pool.lifecycle.forkserver", func(b *testing.B) {
		fs := newStarter(b)
		timed := make([]time.Duration, 0, 64)
		for b.Loop() {
			warm(b, fs)
			t0 := time.Now()
			p, err := pool.New(ctx, pool.Workers(2), pool.Starter(fs))
			if err != nil {
				b.Fatal(err)
			}
			got, err := square.Map(ctx, p, []int{1, 2})
			if err != nil || !slices.Equal(got, []int{1, 4}) {
				b.Fatalf("Map = %v, %v", got, err)
			}
			p.Close()
			if err := p.Join(ctx); err != nil {
				b.Fatal(err)
			}
			timed = append(timed, time.Since(t0))
		}
		report(b, timed)
	})
	b.Run("manager.lifecycle.forkserver", func(b *testing.B) {
		fs := newStarter(b)
		timed := make([]time.Duration, 0, 64)
		for b.Loop() {
			warm(b, fs)
			t0 := time.Now()
			m, err := manager.Start(ctx, manager.Starter(fs))
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Shutdown(ctx); err != nil {
				b.Fatal(err)
			}
			timed = append(timed, time.Since(t0))
		}
		report(b, timed)
	})
}

// benchReplace times, in a pool of one worker, a SIGKILL of the worker
// and a task completed by its replacement: detection, the replacement's
// start and hand-shake, and one task round trip. Retries(1) makes a task
// that reached the dying worker run again instead of failing.
func benchReplace(b *testing.B, useForkserver bool) {
	ctx := context.Background()
	opts := []pool.Option{pool.Workers(1), pool.Retries(1)}
	var fs *forkserver.Starter
	if useForkserver {
		fs = newStarter(b)
		opts = append(opts, pool.Starter(fs))
	}
	p, err := pool.New(ctx, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		p.Terminate()
		p.Join(ctx)
	}()
	if _, err := square.Apply(ctx, p, 3); err != nil {
		b.Fatal(err)
	}
	timed := make([]time.Duration, 0, 64)
	for b.Loop() {
		if fs != nil {
			warm(b, fs)
		}
		pids := p.Pids()
		if len(pids) != 1 {
			b.Fatalf("pool has workers %v, want one", pids)
		}
		t0 := time.Now()
		if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		got, err := square.Apply(ctx, p, 3)
		if err != nil || got != 9 {
			b.Fatalf("Apply = %v, %v", got, err)
		}
		timed = append(timed, time.Since(t0))
		// The next kill must find the replacement, not the dead worker.
		for slices.Contains(p.Pids(), pids[0]) {
			time.Sleep(50 * time.Microsecond)
		}
	}
	report(b, timed)
}

func newStarter(b *testing.B) *forkserver.Starter {
	fs, err := forkserver.New(forkserver.Size(2))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fs.Close() })
	return fs
}

func warm(b *testing.B, fs *forkserver.Starter) {
	b.StopTimer()
	defer b.StartTimer()
	if err := fs.Warm(context.Background()); err != nil {
		b.Fatal(err)
	}
}

func report(b *testing.B, timed []time.Duration) {
	if len(timed) == 0 {
		b.Fatal(fmt.Errorf("no iteration"))
	}
	slices.Sort(timed)
	b.ReportMetric(float64(timed[len(timed)/2])/1e6, "ms")
}
