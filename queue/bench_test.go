// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/syncprim"
)

// putter and getter are what the throughput children need of a Queue or
// a SimpleQueue.
type putter interface {
	Put(context.Context, int) error
}
type getter interface {
	Get(context.Context) (int, error)
}

func produce(ctx context.Context, q putter, n int, bar *syncprim.Barrier) error {
	defer bar.Close()
	if _, err := bar.Wait(ctx); err != nil {
		return err
	}
	for i := range n {
		if err := q.Put(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

func consume(ctx context.Context, q getter, n int, bar *syncprim.Barrier, done *syncprim.Event) error {
	defer bar.Close()
	defer done.Close()
	if _, err := bar.Wait(ctx); err != nil {
		return err
	}
	for i := range n {
		v, err := q.Get(ctx)
		if err != nil {
			return err
		}
		if v != i {
			return fmt.Errorf("got %d, want %d", v, i)
		}
	}
	return done.Set()
}

var (
	fnBenchProduce = process.Register("queue.bench.produce", func(ctx context.Context, q *Queue[int], n int, bar *syncprim.Barrier) error {
		defer q.Close()
		return produce(ctx, q, n, bar)
	})
	fnBenchConsume = process.Register("queue.bench.consume", func(ctx context.Context, q *Queue[int], n int, bar *syncprim.Barrier, done *syncprim.Event) error {
		defer q.Close()
		return consume(ctx, q, n, bar, done)
	})
	fnBenchProduceSimple = process.Register("queue.bench.produce.simple", func(ctx context.Context, q *SimpleQueue[int], n int, bar *syncprim.Barrier) error {
		defer q.Close()
		return produce(ctx, q, n, bar)
	})
	fnBenchConsumeSimple = process.Register("queue.bench.consume.simple", func(ctx context.Context, q *SimpleQueue[int], n int, bar *syncprim.Barrier, done *syncprim.Event) error {
		defer q.Close()
		return consume(ctx, q, n, bar, done)
	})
)

// tputRound runs one producer process and one consumer process moving n
// ints through q and returns the time from the start barrier's release to
// the consumer's last Get (process start-up excluded, as in the CPython
// kit).
func tputRound(b *testing.B, q any, n int) time.Duration {
	ctx := context.Background()
	bar := must[*syncprim.Barrier](b)(syncprim.NewBarrier(3))
	defer bar.Close()
	done := must[*syncprim.Event](b)(syncprim.NewEvent())
	defer done.Close()
	var prod, cons *process.Process
	switch q := q.(type) {
	case *Queue[int]:
		prod, cons = fnBenchProduce.Process(q, n, bar), fnBenchConsume.Process(q, n, bar, done)
	case *SimpleQueue[int]:
		prod, cons = fnBenchProduceSimple.Process(q, n, bar), fnBenchConsumeSimple.Process(q, n, bar, done)
	}
	for _, p := range []*process.Process{prod, cons} {
		if err := p.Start(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := bar.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	err := done.Wait(wctx)
	dt := time.Since(t0)
	cancel()
	for _, p := range []*process.Process{prod, cons} {
		if jerr := p.Join(ctx); jerr != nil {
			b.Fatal(jerr)
		}
		p.Close()
	}
	if err != nil {
		b.Fatal(err)
	}
	return dt
}

// BenchmarkKit holds the baseline kit's queue keys: one producer process
// and one consumer process moving 200k small ints (items/s); 1 MiB
// []byte items (queue.tput.big, GB/s); and the memcpy floor (GB/s).
func BenchmarkKit(b *testing.B) {
	const n = 200_000
	for _, tt := range []struct {
		key string
		mk  func() (any, func() error)
	}{
		{"queue.tput", func() (any, func() error) {
			q := must[*Queue[int]](b)(New[int]())
			return q, q.Close
		}},
		{"simplequeue.tput", func() (any, func() error) {
			q := must[*SimpleQueue[int]](b)(NewSimple[int]())
			return q, q.Close
		}},
	} {
		b.Run(tt.key, func(b *testing.B) {
			b.ReportAllocs()
			var total time.Duration
			rounds := 0
			for b.Loop() {
				q, closeQ := tt.mk()
				total += tputRound(b, q, n)
				closeQ()
				rounds++
			}
			b.ReportMetric(float64(n*rounds)/total.Seconds(), "items/s")
		})
	}
	b.Run("queue.tput.big", func(b *testing.B) { benchBig(b, false) })
	b.Run("queue.tput.big.get", func(b *testing.B) { benchBig(b, true) })
	b.Run("memcpy", benchMemcpy)
}

// bigItem is the size of queue.tput.big's items, and bigItems how many
// one round moves (256 MiB).
const (
	bigItem  = 1 << 20
	bigItems = 256
)

var (
	fnBenchProduceBig = process.Register("queue.bench.produce.big", func(ctx context.Context, q *Queue[[]byte], n int, bar *syncprim.Barrier) error {
		defer q.Close()
		defer bar.Close()
		// The item is made before the start: not part of the stream.
		item := make([]byte, bigItem)
		for i := range item {
			item[i] = byte(i)
		}
		if _, err := bar.Wait(ctx); err != nil {
			return err
		}
		for i := range n {
			item[0] = byte(i)
			if err := q.Put(ctx, item); err != nil {
				return err
			}
		}
		return nil
	})
	fnBenchConsumeBig = process.Register("queue.bench.consume.big", func(ctx context.Context, q *Queue[[]byte], n int, bar *syncprim.Barrier, done *syncprim.Event, plainGet bool) error {
		defer q.Close()
		defer bar.Close()
		defer done.Close()
		if _, err := bar.Wait(ctx); err != nil {
			return err
		}
		var v []byte
		for i := range n {
			var err error
			if plainGet {
				v, err = q.Get(ctx)
			} else {
				v, err = GetBytes(ctx, q, v)
			}
			if err != nil {
				return err
			}
			if len(v) != bigItem || v[0] != byte(i) || v[bigItem-1] != byte((bigItem-1)&0xff) {
				return fmt.Errorf("item %d: wrong bytes (len %d)", i, len(v))
			}
		}
		return done.Set()
	})
)

// benchBig is queue.tput.big: one producer process and one consumer
// process moving 1 MiB []byte items (GB/s, start-up excluded), the
// consumer taking them with GetBytes into one reused buffer; with
// plainGet (queue.tput.big.get) with Get, each item in new memory.
func benchBig(b *testing.B, plainGet bool) {
	ctx := context.Background()
	var total time.Duration
	rounds := 0
	for b.Loop() {
		q := must[*Queue[[]byte]](b)(New[[]byte](bigOpts...))
		bar := must[*syncprim.Barrier](b)(syncprim.NewBarrier(3))
		done := must[*syncprim.Event](b)(syncprim.NewEvent())
		prod, cons := fnBenchProduceBig.Process(q, bigItems, bar), fnBenchConsumeBig.Process(q, bigItems, bar, done, plainGet)
		for _, p := range []*process.Process{prod, cons} {
			if err := p.Start(ctx); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := bar.Wait(ctx); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := done.Wait(wctx)
		total += time.Since(t0)
		cancel()
		for _, p := range []*process.Process{prod, cons} {
			if jerr := p.Join(ctx); jerr != nil {
				b.Fatal(jerr)
			}
			p.Close()
		}
		if err != nil {
			b.Fatal(err)
		}
		bar.Close()
		done.Close()
		q.Close()
		rounds++
	}
	b.ReportMetric(float64(bigItem*bigItems*rounds)/total.Seconds()/1e9, "GB/s")
}

// benchMemcpy is the memcpy floor: a plain Go copy of 16 MiB between two
// buffers already faulted in (GB/s).
func benchMemcpy(b *testing.B) {
	const n = 16 << 20
	src, dst := make([]byte, n), make([]byte, n)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src)
	b.SetBytes(n)
	var total time.Duration
	rounds := 0
	for b.Loop() {
		t0 := time.Now()
		copy(dst, src)
		total += time.Since(t0)
		rounds++
	}
	b.ReportMetric(float64(n*rounds)/total.Seconds()/1e9, "GB/s")
}

var bigOpts []Option
