// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/multiproc/multiproc/internal/base/cachecopy"
	"github.com/multiproc/multiproc/process"
)

// bigPattern returns n bytes that differ from one offset to the next.
func bigPattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ byte(i>>9) ^ seed
	}
	return b
}

// bigSizes are item sizes around the 16-byte line between payloads held
// inline by a Get and payloads that the item takes over, and large ones,
// some at the edges of the pieces the ring's copies are made of.
var bigSizes = []int{0, 1, 15, 16, 17, 4096, cachecopy.Piece - 1, cachecopy.Piece, cachecopy.Piece + 1, 1 << 20, 3<<20 + 5}

type bigStruct struct {
	Name   string
	Ints   []int64
	Chunks [][]byte
	Words  []string
}

var fnEchoBig = process.Register("queue.test.echo.big", func(ctx context.Context, in, out *Queue[[]byte], n int) error {
	defer in.Close()
	defer out.Close()
	for range n {
		v, err := in.Get(ctx)
		if err != nil {
			return err
		}
		if err := out.Put(ctx, v); err != nil {
			return err
		}
	}
	return nil
})

// TestBigItems: []byte, string and struct items of every size come out as
// they went in, through a child process and back; a []byte item that a
// Get returned is the caller's (changing it changes nothing queued).
func TestBigItems(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	in := must[*Queue[[]byte]](t)(New[[]byte]())
	defer in.Close()
	out := must[*Queue[[]byte]](t)(New[[]byte]())
	defer out.Close()
	p := start(t, fnEchoBig.Process(in, out, 2*len(bigSizes)))
	for i, n := range bigSizes {
		for k := range 2 {
			if err := in.Put(ctx, bigPattern(n, byte(2*i+k))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, n := range bigSizes {
		first, err := out.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(first) > 0 {
			first[0] ^= 0xff // the caller's own memory
		}
		second, err := out.Get(ctx)
		if err != nil || !bytes.Equal(second, bigPattern(n, byte(2*i+1))) {
			t.Fatalf("%d bytes: got %d bytes, %v", n, len(second), err)
		}
		if len(first) > 0 {
			first[0] ^= 0xff
		}
		if !bytes.Equal(first, bigPattern(n, byte(2*i))) {
			t.Fatalf("%d bytes: first item changed", n)
		}
	}
	join(t, p)

	qs := must[*Queue[string]](t)(New[string]())
	defer qs.Close()
	for _, n := range bigSizes {
		want := string(bigPattern(n, 3))
		if err := qs.Put(ctx, want); err != nil {
			t.Fatal(err)
		}
		if got, err := qs.Get(ctx); err != nil || got != want {
			t.Fatalf("string of %d bytes: %v", n, err)
		}
	}

	qst := must[*Queue[bigStruct]](t)(New[bigStruct]())
	defer qst.Close()
	want := bigStruct{Name: "big", Words: []string{"a", "", "c"}}
	for i := range 100_000 {
		want.Ints = append(want.Ints, int64(i)*-5)
	}
	for i := range 10 {
		want.Chunks = append(want.Chunks, bigPattern(50_000+i, byte(i)))
	}
	if err := qst.Put(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := qst.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

var fnGetBytes = process.Register("queue.test.getbytes", func(ctx context.Context, in, out *Queue[[]byte], n, bufCap int) error {
	defer in.Close()
	defer out.Close()
	buf := make([]byte, 0, bufCap)
	for range n {
		v, err := GetBytes(ctx, in, buf)
		if err != nil {
			return err
		}
		if len(v) > 0 && len(v) <= bufCap && &v[0] != &buf[:1][0] {
			return fmt.Errorf("an item of %d bytes did not land in a buffer of %d", len(v), bufCap)
		}
		if err := out.Put(ctx, v); err != nil {
			return err
		}
	}
	return nil
})

// TestGetBytes: GetBytes returns the items Get would, for every size
// (inline, exactly the buffer's capacity, one byte over it, megabytes),
// in the buffer's memory when they fit and in new memory otherwise, in a
// child process and in this one; an empty item comes out empty, not nil.
func TestGetBytes(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	const bufCap = 4096
	sizes := append([]int{bufCap - 1, bufCap + 1}, bigSizes...)
	in := must[*Queue[[]byte]](t)(New[[]byte]())
	defer in.Close()
	out := must[*Queue[[]byte]](t)(New[[]byte]())
	defer out.Close()
	p := start(t, fnGetBytes.Process(in, out, len(sizes), bufCap))
	for i, n := range sizes {
		if err := in.Put(ctx, bigPattern(n, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 0, 1<<20)
	for i, n := range sizes {
		v, err := GetBytes(ctx, out, buf)
		if err != nil || !bytes.Equal(v, bigPattern(n, byte(i))) {
			t.Fatalf("%d bytes: got %d bytes, %v", n, len(v), err)
		}
		if v == nil {
			t.Fatalf("%d bytes: nil", n)
		}
		if n > 0 && n <= cap(buf) && &v[0] != &buf[:1][0] {
			t.Fatalf("%d bytes: not in the buffer", n)
		}
		if n > cap(buf) && &v[0] == &buf[:1][0] {
			t.Fatalf("%d bytes: in a buffer of %d", n, cap(buf))
		}
	}
	join(t, p)
	if err := in.Put(ctx, []byte{}); err != nil {
		t.Fatal(err)
	}
	if v, err := GetBytes(ctx, in, nil); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("empty item: %v (nil: %v), %v", v, v == nil, err)
	}
	in.Close()
	if _, err := GetBytes(ctx, in, buf); err != ErrClosed {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
	if _, err := GetBytes(ctx, new(Queue[[]byte]), buf); err != ErrClosed {
		t.Fatalf("zero queue: %v, want ErrClosed", err)
	}

	// A JoinableQueue and a SimpleQueue of []byte take GetBytes too.
	jq := must[*JoinableQueue[[]byte]](t)(NewJoinable[[]byte]())
	defer jq.Close()
	sq := must[*SimpleQueue[[]byte]](t)(NewSimple[[]byte]())
	defer sq.Close()
	want := bigPattern(100_000, 9)
	if err := jq.Put(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := sq.Put(ctx, want); err != nil {
		t.Fatal(err)
	}
	for _, bq := range []BytesQueue{jq, sq} {
		v, err := GetBytes(ctx, bq, buf)
		if err != nil || !bytes.Equal(v, want) || &v[0] != &buf[:1][0] {
			t.Fatalf("%T: %d bytes, %v", bq, len(v), err)
		}
	}
	if err := jq.TaskDone(); err != nil {
		t.Fatal(err)
	}
}

// TestBigPutWaitsBeforeGrowing: a Put of a large item that does not fit
// in a ring already holding bigRingFrames of them waits for a Get to make
// room instead of growing the ring (growWait is an hour here, so the
// check does not depend on timing), a context ends that wait, TryPut
// grows at once; and with
// the real growWait and no consumer at all, Puts still all get in, the
// ring growing after each bounded wait.
func TestBigPutWaitsBeforeGrowing(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	const item = 200 << 10
	q := must[*Queue[[]byte]](t)(New[[]byte]())
	defer q.Close()
	saved := growWait
	growWait = time.Hour
	defer func() { growWait = saved }()
	// The ring grows freely to 1 MiB (bigRingFrames frames of 200 KiB
	// need 800 KiB and change), which then holds 5 items.
	n := 0
	for ; atomic.LoadUint64(q.c.capacity) < bigRingFrames*(item+frameHdr) || q.c.roomNow(item+frameHdr); n++ {
		if err := q.Put(ctx, bigPattern(item, byte(n))); err != nil {
			t.Fatal(err)
		}
	}
	capa := atomic.LoadUint64(q.c.capacity)
	// The wait before growing ends with the Put's context: nothing put.
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	err := q.Put(tctx, bigPattern(item, 0xee))
	cancel()
	if !errors.Is(err, ErrFull) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put past its deadline: %v, want ErrFull and DeadlineExceeded", err)
	}
	if q.Len() != n || atomic.LoadUint64(q.c.capacity) != capa {
		t.Fatalf("after a Put that timed out: %d items (want %d), ring of %d bytes (want %d)", q.Len(), n, atomic.LoadUint64(q.c.capacity), capa)
	}
	put := make(chan error, 1)
	go func() { put <- q.Put(ctx, bigPattern(item, byte(n))) }()
	for i := 0; i <= n; i++ {
		v, err := q.Get(ctx)
		if err != nil || !bytes.Equal(v, bigPattern(item, byte(i))) {
			t.Fatalf("item %d: %d bytes, %v", i, len(v), err)
		}
		if i == 0 {
			if err := <-put; err != nil {
				t.Fatal(err)
			}
			if c := atomic.LoadUint64(q.c.capacity); c != capa {
				t.Fatalf("the ring grew from %d to %d bytes instead of waiting for room", capa, c)
			}
		}
	}
	// Full again: TryPut does not wait, it grows.
	for q.c.roomNow(item + frameHdr) {
		if err := q.TryPut(bigPattern(item, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.TryPut(bigPattern(item, 0)); err != nil {
		t.Fatalf("TryPut on a full ring that may grow: %v", err)
	}
	if c := atomic.LoadUint64(q.c.capacity); c <= capa {
		t.Fatalf("TryPut did not grow the ring (%d bytes)", c)
	}

	growWait = saved
	q2 := must[*Queue[[]byte]](t)(New[[]byte]())
	defer q2.Close()
	const many = 40 // 8 MiB: the ring doubles three times past 1 MiB
	for i := range many {
		if err := q2.Put(ctx, bigPattern(item, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range many {
		if v, err := q2.Get(ctx); err != nil || !bytes.Equal(v, bigPattern(item, byte(i))) {
			t.Fatalf("item %d: %d bytes, %v", i, len(v), err)
		}
	}
}
