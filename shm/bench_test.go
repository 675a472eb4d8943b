// SPDX-License-Identifier: Apache-2.0

//go:build linux

package shm

import (
	"testing"
)

// BenchmarkKit measures the baseline kit's shared-memory keys (see
// /work/shared/bench and baseline.md), in microseconds per operation.
func BenchmarkKit(b *testing.B) {
	perOp := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/float64(b.N), "us")
	}
	b.Run("shm.create_unlink.1MiB", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s, err := Create("", 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
			if err := s.Unlink(); err != nil {
				b.Fatal(err)
			}
		}
		perOp(b)
	})
	b.Run("shm.attach", func(b *testing.B) {
		s, err := Create("", 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Unlink()
		defer s.Close()
		b.ReportAllocs()
		for b.Loop() {
			a, err := Open(s.Name())
			if err != nil {
				b.Fatal(err)
			}
			a.Close()
		}
		perOp(b)
	})
	b.Run("shareablelist.create1000", func(b *testing.B) {
		items := make([]any, 1000)
		for i := range items {
			items[i] = i
		}
		b.ReportAllocs()
		for b.Loop() {
			l, err := NewShareableList("", items)
			if err != nil {
				b.Fatal(err)
			}
			l.Close()
			if err := l.Unlink(); err != nil {
				b.Fatal(err)
			}
		}
		perOp(b)
	})
}

// BenchmarkValueAdd is the cost of an atomic add on a shared counter.
func BenchmarkValueAdd(b *testing.B) {
	v, err := NewValue[int64](0)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	for b.Loop() {
		v.Add(1)
	}
}

// BenchmarkArenaAllocFree is the cost of a small block's Alloc and Free.
func BenchmarkArenaAllocFree(b *testing.B) {
	a, err := NewArena(1 << 20)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	b.ReportAllocs()
	for b.Loop() {
		blk, err := a.Alloc(8, 8)
		if err != nil {
			b.Fatal(err)
		}
		a.Free(blk)
	}
}
