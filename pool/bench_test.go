// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/multiproc/multiproc/pool"
)

// BenchmarkKit reports the baseline kit's pool.* keys (2 workers, like
// CPython's Pool(2)) and pool.map.big.{in,echo} (GB/s of arguments), but
// pool.lifecycle, which is bound by starting
// processes and so lives in tools/internal/startbench, in a binary that
// links no test-only package (see there).
func BenchmarkKit(b *testing.B) {
	ctx := context.Background()
	const n = 100_000
	in := ints(n)
	mapKey := func(name string, opts ...pool.MapOption) {
		b.Run(name, func(b *testing.B) {
			p := newPool(b, pool.Workers(2))
			b.ReportAllocs()
			var total time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := square.Map(ctx, p, in, opts...); err != nil {
					b.Fatal(err)
				}
				total += time.Since(t0)
			}
			b.ReportMetric(float64(n*b.N)/total.Seconds(), "tasks/s")
		})
	}
	mapKey("pool.map.default")
	mapKey("pool.map.chunk1", pool.Chunksize(1))
	b.Run("pool.imap_unordered", func(b *testing.B) {
		p := newPool(b, pool.Workers(2))
		b.ReportAllocs()
		var total time.Duration
		for b.Loop() {
			t0 := time.Now()
			for _, err := range square.ImapUnordered(ctx, p, slices.Values(in), pool.Chunksize(1)) {
				if err != nil {
					b.Fatal(err)
				}
			}
			total += time.Since(t0)
		}
		b.ReportMetric(float64(n*b.N)/total.Seconds(), "tasks/s")
	})
	b.Run("pool.apply_async.rtt", func(b *testing.B) {
		p := newPool(b, pool.Workers(2))
		b.ReportAllocs()
		var total time.Duration
		for b.Loop() {
			t0 := time.Now()
			if _, err := square.Submit(ctx, p, 3).Get(ctx); err != nil {
				b.Fatal(err)
			}
			total += time.Since(t0)
		}
		b.ReportMetric(float64(total.Nanoseconds())/1000/float64(b.N), "us")
	})
	bigKey := func(name string, echo bool) {
		b.Run(name, func(b *testing.B) {
			const tasks, size = 16, 16 << 20
			in := make([][]byte, tasks)
			for i := range in {
				in[i] = bigPattern(size, byte(i))
			}
			p := newPool(b, pool.Workers(2), pool.SharedMemory(0))
			run := func() {
				if echo {
					out, err := bigEcho.Map(ctx, p, in, pool.Chunksize(1))
					if err != nil || len(out) != tasks || len(out[tasks-1]) != size {
						b.Fatal(err)
					}
				} else {
					if _, err := bigLen.Map(ctx, p, in, pool.Chunksize(1)); err != nil {
						b.Fatal(err)
					}
				}
			}
			// The steady state of a pool that moves big data: one call
			// first, which makes the workers' shared-memory segments and
			// maps them (the kernel fills new shared memory at about
			// 0.2 GB/s here: docs/performance.md, "Big data").
			run()
			var total time.Duration
			for b.Loop() {
				t0 := time.Now()
				run()
				total += time.Since(t0)
			}
			b.ReportMetric(float64(tasks*size*b.N)/total.Seconds()/1e9, "GB/s")
		})
	}
	// 16 tasks of 16 MiB []byte, chunksize 1, 2 workers: the arguments
	// only (the task returns an int), then arguments and results.
	bigKey("pool.map.big.in", false)
	bigKey("pool.map.big.echo", true)
}
