// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type point struct {
	X, Y int
	Name string
}

type color int

func roundTrip[T any](t *testing.T, items ...T) {
	t.Helper()
	q := must[*Queue[T]](t)(New[T]())
	defer q.Close()
	ctx := ctxT(t)
	for _, v := range items {
		if err := q.Put(ctx, v); err != nil {
			t.Fatalf("Put(%v): %v", v, err)
		}
	}
	if got := q.Len(); got != len(items) {
		t.Fatalf("Len = %d, want %d", got, len(items))
	}
	var got []T
	for range items {
		v, err := q.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if diff := cmp.Diff(items, got, cmp.Comparer(proto.Equal)); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestTypes(t *testing.T) {
	leakChecks(t)
	roundTrip(t, 0, 1, -1, math.MaxInt, math.MinInt)
	roundTrip(t, int8(-128), int8(127))
	roundTrip(t, uint16(65535), uint16(0))
	roundTrip(t, uint64(math.MaxUint64))
	roundTrip(t, float32(1.5), float32(math.Inf(-1)))
	roundTrip(t, 3.25, math.MaxFloat64)
	roundTrip(t, complex64(1+2i), complex64(-3i))
	roundTrip(t, 1+2i)
	roundTrip(t, true, false)
	roundTrip(t, "", "a", "héllo", strings.Repeat("x", 100), "\xff\xfe")
	roundTrip(t, color(3), color(-7))
	roundTrip(t, []byte("raw"), []byte{}, bytes.Repeat([]byte{7}, 1000))
	roundTrip(t, point{1, 2, "p"}, point{})
	roundTrip(t, []string{"a", "b"})
	roundTrip(t, map[string]int{"a": 1})
	roundTrip(t, time.Date(2026, 11, 25, 1, 2, 3, 4, time.UTC)) // GobEncoder: codec path
	roundTrip(t, wrapperspb.String("proto"), wrapperspb.String(""))
}

// A consumer of another type gets the codec's result: gob decodes an int
// into an int8 when it fits, and fails when it does not.
func TestMixedTypes(t *testing.T) {
	ctx := ctxT(t)
	q := must[*Queue[int]](t)(New[int]())
	defer q.Close()
	files, desc, err := q.MultiprocHandle()
	if err != nil {
		t.Fatal(err)
	}
	var small Queue[int8]
	if err := small.MultiprocAttach(files, desc); err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	var any8 Queue[int64]
	files, desc, _ = q.MultiprocHandle()
	if err := any8.MultiprocAttach(files, desc); err != nil {
		t.Fatal(err)
	}
	defer any8.Close()
	q.Put(ctx, 5)
	q.Put(ctx, 1000)
	q.Put(ctx, 1<<30) // fits int on 32-bit systems too
	if v, err := small.Get(ctx); err != nil || v != 5 {
		t.Errorf("int8 Get = %v, %v; want 5", v, err)
	}
	var de *DecodeError
	if _, err := small.Get(ctx); !errors.As(err, &de) {
		t.Errorf("int8 Get of 1000: %v, want a *DecodeError", err)
	}
	if v, err := any8.Get(ctx); err != nil || v != 1<<30 {
		t.Errorf("int64 Get = %v, %v", v, err)
	}

	// A fast-path item read as a struct goes through gob: an error.
	sq := must[*Queue[string]](t)(New[string]())
	defer sq.Close()
	files, desc, _ = sq.MultiprocHandle()
	var pq Queue[point]
	if err := pq.MultiprocAttach(files, desc); err != nil {
		t.Fatal(err)
	}
	defer pq.Close()
	sq.Put(ctx, "x")
	if _, err := pq.Get(ctx); !errors.As(err, &de) {
		t.Errorf("point Get of a string: %v, want a *DecodeError", err)
	}
	if !sq.Empty() {
		t.Error("the undecodable item was not taken")
	}
}

// _TestQueue.test_put: maxsize 6.
func TestPutFull(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	q := must[*Queue[int]](t)(New[int](MaxSize(6)))
	defer q.Close()
	if !q.Empty() || q.Full() || q.MaxSize() != 6 {
		t.Fatalf("new queue: Empty %v Full %v MaxSize %d", q.Empty(), q.Full(), q.MaxSize())
	}
	for i := range 6 {
		var err error
		if i%2 == 0 {
			err = q.TryPut(i)
		} else {
			err = q.Put(ctx, i)
		}
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if q.Empty() || !q.Full() || q.Len() != 6 {
		t.Fatalf("after 6 puts: Empty %v Full %v Len %d", q.Empty(), q.Full(), q.Len())
	}
	if err := q.TryPut(7); err != ErrFull {
		t.Errorf("7th TryPut = %v, want ErrFull", err)
	}
	const timeout = 100 * time.Millisecond
	tctx, cancel := context.WithTimeout(ctx, timeout)
	dl, _ := tctx.Deadline()
	err := q.Put(tctx, 7)
	early := time.Until(dl)
	cancel()
	if !errors.Is(err, ErrFull) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put with a deadline = %v, want ErrFull and DeadlineExceeded", err)
	}
	if early > 0 {
		t.Errorf("Put with a %v deadline returned %v before it", timeout, early)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := q.Put(cctx, 7); !errors.Is(err, ErrFull) || !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context = %v", err)
	}
	if q.Len() != 6 {
		t.Errorf("Len = %d after failed puts", q.Len())
	}
	for i := range 6 {
		if v, err := q.Get(ctx); err != nil || v != i {
			t.Fatalf("Get = %v, %v; want %d", v, err, i)
		}
	}
	if !q.Empty() || q.Full() {
		t.Error("not empty after draining")
	}
}

// _TestQueue.test_get: empty queue.
func TestGetEmpty(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	q := must[*Queue[string]](t)(New[string]())
	defer q.Close()
	if _, err := q.TryGet(); err != ErrEmpty {
		t.Errorf("TryGet = %v, want ErrEmpty", err)
	}
	const timeout = 100 * time.Millisecond
	tctx, cancel := context.WithTimeout(ctx, timeout)
	dl, _ := tctx.Deadline()
	_, err := q.Get(tctx)
	early := time.Until(dl)
	cancel()
	if !errors.Is(err, ErrEmpty) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get with a deadline = %v", err)
	}
	if early > 0 {
		t.Errorf("Get with a %v deadline returned %v before it", timeout, early)
	}
	// A waiting Get returns the item put by another goroutine.
	got := make(chan string)
	go func() {
		v, _ := q.Get(ctx)
		got <- v
	}()
	q.Put(ctx, "late")
	if v := <-got; v != "late" {
		t.Errorf("Get = %q", v)
	}
}

// _TestQueue.test_closed_queue_put_get_exceptions, and a Close that
// wakes a waiting Get.
func TestClosed(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	q := must[*Queue[int]](t)(New[int]())
	errc := make(chan error)
	go func() {
		_, err := q.Get(ctx)
		errc <- err
	}()
	for atomic.LoadUint32(q.c.notEmpty)&1 == 0 {
		time.Sleep(time.Millisecond) // the Get has not gone to sleep yet
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != ErrClosed {
		t.Errorf("waiting Get after Close = %v", err)
	}
	if err := q.Put(ctx, 1); err != ErrClosed {
		t.Errorf("Put after Close = %v", err)
	}
	if _, err := q.Get(ctx); err != ErrClosed {
		t.Errorf("Get after Close = %v", err)
	}
	if _, err := q.TryGet(); err != ErrClosed {
		t.Errorf("TryGet after Close = %v", err)
	}
	if err := q.TryPut(1); err != ErrClosed {
		t.Errorf("TryPut after Close = %v", err)
	}
	if _, _, err := q.MultiprocHandle(); err != ErrClosed {
		t.Errorf("MultiprocHandle after Close = %v", err)
	}
	if q.Len() != 0 || !q.Empty() {
		t.Error("Len of a closed queue")
	}
	if err := q.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	var zero Queue[int]
	if err := zero.Put(ctx, 1); err != ErrClosed {
		t.Errorf("Put on a zero Queue = %v", err)
	}
	s := must[*SimpleQueue[int]](t)(NewSimple[int]())
	s.Close()
	if err := s.Close(); err != nil {
		t.Errorf("SimpleQueue double Close = %v", err)
	}
	if _, err := s.Get(ctx); err != ErrClosed {
		t.Errorf("SimpleQueue Get after Close = %v", err)
	}
}

// Items of a failed encoding are not put and leave the queue usable
// (_TestQueue.test_queue_feeder_donot_stop_onexc, without a feeder).
func TestEncodeError(t *testing.T) {
	ctx := ctxT(t)
	type bad struct{ C chan int }
	q := must[*Queue[any]](t)(New[any]())
	defer q.Close()
	if err := q.Put(ctx, bad{}); err == nil {
		t.Fatal("Put of a channel succeeded")
	}
	if q.Len() != 0 {
		t.Errorf("Len = %d", q.Len())
	}
	b := must[*Queue[[]byte]](t)(New[[]byte](MaxItemSize(10)))
	defer b.Close()
	var tl *ItemTooLargeError
	if err := b.Put(ctx, make([]byte, 11)); !errors.As(err, &tl) || tl.Size != 11 || tl.Max != 10 {
		t.Errorf("Put of 11 bytes = %v", err)
	}
	if err := b.Put(ctx, make([]byte, 10)); err != nil {
		t.Error(err)
	}
}

func TestJoinableLocal(t *testing.T) {
	ctx := ctxT(t)
	q := must[*JoinableQueue[int]](t)(NewJoinable[int]())
	defer q.Close()
	if err := q.TaskDone(); err != ErrTaskDone {
		t.Errorf("TaskDone on a new queue = %v", err)
	}
	if err := q.Join(ctx); err != nil {
		t.Errorf("Join with nothing put = %v", err)
	}
	q.Put(ctx, 1)
	q.Put(ctx, 2)
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	if err := q.Join(tctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Join with 2 unfinished = %v", err)
	}
	cancel()
	if q.Unfinished() != 2 {
		t.Errorf("Unfinished = %d", q.Unfinished())
	}
	joined := make(chan error)
	go func() { joined <- q.Join(ctx) }()
	for range 2 {
		q.Get(ctx)
		if err := q.TaskDone(); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-joined; err != nil {
		t.Errorf("Join = %v", err)
	}
	if err := q.TaskDone(); err != ErrTaskDone {
		t.Errorf("TaskDone once too often = %v", err)
	}
}

// Large items make the ring grow (relocating wrapped data) and shrink
// back when the queue drains; interleaved with small ones and across the
// ring's end.
func TestGrowShrink(t *testing.T) {
	ctx := ctxT(t)
	q := must[*Queue[[]byte]](t)(New[[]byte]())
	defer q.Close()
	item := func(i, n int) []byte {
		b := make([]byte, n)
		fillPattern(b, byte(i))
		return b
	}
	sizes := []int{100, 70 << 10, 3, 300 << 10, 5, 1 << 20, 16 << 20, 9, 200 << 10, 4 << 20}
	next := 0
	for round := range 20 {
		// Keep a few items queued so that positions wrap.
		for k := 0; k < 3; k++ {
			i := round*3 + k
			if err := q.Put(ctx, item(i, sizes[i%len(sizes)])); err != nil {
				t.Fatal(err)
			}
		}
		for k := 0; k < 2; k++ {
			v, err := q.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := item(next, sizes[next%len(sizes)]); !bytes.Equal(v, want) {
				t.Fatalf("item %d: %d bytes, differs", next, len(v))
			}
			next++
		}
	}
	if c := q.c.capacity; *c <= minRing {
		t.Errorf("capacity %d: the ring did not grow", *c)
	}
	// Make the last growth look old enough for the drain to shrink.
	atomic.StoreUint64(q.c.lastGrow, uint64(time.Now().Add(-shrinkAfter).UnixNano()))
	for !q.Empty() {
		v, err := q.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := item(next, sizes[next%len(sizes)]); !bytes.Equal(v, want) {
			t.Fatalf("item %d differs", next)
		}
		next++
	}
	if c := *q.c.capacity; c != minRing {
		t.Errorf("capacity %d after draining, want %d", c, minRing)
	}
}

// MaxBytes bounds the bytes: an unbounded queue's Put waits when they are
// used up.
func TestMaxBytes(t *testing.T) {
	ctx := ctxT(t)
	q := must[*Queue[[]byte]](t)(New[[]byte](MaxBytes(64 << 10)))
	defer q.Close()
	if err := q.TryPut(make([]byte, 40<<10)); err != nil {
		t.Fatal(err)
	}
	if err := q.TryPut(make([]byte, 30<<10)); err != ErrFull {
		t.Errorf("TryPut beyond MaxBytes = %v", err)
	}
	done := make(chan error)
	go func() { done <- q.Put(ctx, make([]byte, 30<<10)) }()
	if _, err := q.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("waiting Put = %v", err)
	}
	if _, err := New[int](MaxBytes(1)); err == nil {
		t.Error("MaxBytes(1) accepted")
	}
	if _, err := New[int](MaxSize(-1)); err == nil {
		t.Error("MaxSize(-1) accepted")
	}
	if _, err := New[int](MaxBytes(4096), MaxItemSize(5000)); err == nil {
		t.Error("MaxItemSize > MaxBytes accepted")
	}
}

// Goroutines of one process as producers and consumers (run with -race).
func TestGoroutines(t *testing.T) {
	ctx := ctxT(t)
	q := must[*Queue[int]](t)(New[int](MaxSize(50)))
	defer q.Close()
	const producers, consumers, per = 4, 4, 5000
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range per {
				if err := q.Put(ctx, p*per+i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	seen := make([]int, producers*per)
	var mu sync.Mutex
	var cwg sync.WaitGroup
	for range consumers {
		cwg.Go(func() {
			for {
				v, err := q.Get(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if v < 0 {
					return
				}
				mu.Lock()
				seen[v]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for range consumers {
		q.Put(ctx, -1)
	}
	cwg.Wait()
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("item %d seen %d times", i, n)
		}
	}
}
