// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

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
// inline by a Get and payloads that the item takes over, and large ones.
var bigSizes = []int{0, 1, 15, 16, 17, 4096, 1 << 20, 3<<20 + 5}

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
