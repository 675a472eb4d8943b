// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/multiproc/multiproc/manager"
)

// BenchmarkKit measures the baseline kit's manager keys. The server is a
// separate process started by manager.Start (as CPython's Manager() is),
// and the client talks to it over its unix socket. manager.lifecycle,
// bound by starting a process, lives in tools/internal/startbench, in a
// binary that links no test-only package (see there).
func BenchmarkKit(b *testing.B) {
	ctx := context.Background()
	m, err := manager.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	perOp := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1000/float64(b.N), "us")
	}
	b.Run("manager.dict.set", func(b *testing.B) {
		d, err := manager.NewDict[string, int](ctx, m.Client)
		if err != nil {
			b.Fatal(err)
		}
		defer d.Release(ctx)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := d.Set(ctx, "k", i); err != nil {
				b.Fatal(err)
			}
			i++
		}
		perOp(b)
	})
	b.Run("manager.dict.get", func(b *testing.B) {
		d, err := manager.NewDict(ctx, m.Client, map[string]int{"k": 1})
		if err != nil {
			b.Fatal(err)
		}
		defer d.Release(ctx)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.Get(ctx, "k"); err != nil {
				b.Fatal(err)
			}
		}
		perOp(b)
	})
	// manager.py.dict.get: a CPython client's d['k'] on a dict a Go
	// server holds (ServePython); the report sets it beside CPython's
	// manager.dict.get, CPython on both ends.
	b.Run("manager.py.dict.get", func(b *testing.B) { benchPyDictGet(b, "go") })
	b.Run("manager.list.append", func(b *testing.B) {
		l, err := manager.NewList[int](ctx, m.Client)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Release(ctx)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := l.Append(ctx, i); err != nil {
				b.Fatal(err)
			}
			i++
		}
		perOp(b)
	})
	b.Run("manager.pipelined", func(b *testing.B) {
		d, err := manager.NewDict[string, int](ctx, m.Client)
		if err != nil {
			b.Fatal(err)
		}
		defer d.Release(ctx)
		goroutines := 64 * runtime.GOMAXPROCS(0)
		keys := make([]string, goroutines)
		for i := range keys {
			keys[i] = "k" + strconv.Itoa(i)
		}
		b.ReportAllocs()
		var ops int64
		start := time.Now()
		for b.Loop() {
			var wg sync.WaitGroup
			const perG = 200
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perG {
						if err := d.Set(ctx, keys[g], i); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			ops += int64(goroutines * perG)
		}
		b.ReportMetric(float64(ops)/time.Since(start).Seconds(), "ops/s")
	})
}

// BenchmarkStructs measures what a struct costs over a plain value: the
// encoding alone (ToValue), and a Set and a Get of one in a dict served
// in this process over a pipe.
func BenchmarkStructs(b *testing.B) {
	order := sampleOrders()[0]
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := manager.ToValue(order); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("dict.set+get", func(b *testing.B) {
		_, c := pipeServer(b)
		ctx := context.Background()
		d, err := manager.NewDict[string, Order](ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := d.Set(ctx, "k", order); err != nil {
				b.Fatal(err)
			}
			if _, err := d.Get(ctx, "k"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
