// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/pool"
)

// Large values whose size is known up front (byte slices, strings, plain
// data) are written straight into shared memory when their chunk is sent,
// and a worker lends a task its []byte argument from the segment.
type bigArr [1 << 15]float64 // 256 KiB of plain data

var (
	// bigScribble writes into its argument (lent from shared memory) and
	// returns what it saw before, as a sum: the caller's value must not
	// change.
	bigScribble = pool.Register("test.big.scribble", func(ctx context.Context, b []byte) (int, error) {
		s := 0
		for i := 0; i < len(b); i += 4096 {
			s += int(b[i])
			b[i] = ^b[i]
		}
		return s, nil
	})
	bigStr     = pool.Register("test.big.string", func(ctx context.Context, s string) (string, error) { return s + "!", nil })
	bigArrEcho = pool.Register("test.big.plain", func(ctx context.Context, a bigArr) (bigArr, error) {
		a[0]++
		return a, nil
	})
	// bigTwice returns its argument twice over: results larger than the
	// arguments.
	bigTwice = pool.Register("test.big.twice", func(ctx context.Context, b []byte) ([]byte, error) {
		return append(b[:len(b):len(b)], b...), nil
	})
)

// TestBigLazyValues: byte slices, strings and plain data around the
// threshold (the frame of a chunk of one []byte is the bytes plus a
// length and about 40 bytes of head, so the sizes below cross it), as
// arguments and results, in = out; a task may write into its lent
// argument without the caller's value changing; results larger than
// their arguments come back whole.
func TestBigLazyValues(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckShm(t)
	const th = 64 << 10
	ctx := context.Background()
	p := newPool(t, pool.Workers(2), pool.SharedMemory(th))
	var in [][]byte
	for i := -64; i <= 64; i += 4 {
		in = append(in, bigPattern(th+i, byte(i)))
	}
	in = append(in, bigPattern(3<<20, 9), nil, []byte{})
	got, err := bigEcho.Map(ctx, p, in, pool.Chunksize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if !bytes.Equal(got[i], in[i]) {
			t.Fatalf("echo %d of %d bytes changed", i, len(in[i]))
		}
	}
	// Several per chunk: the chunk is over the threshold as a whole.
	got, err = bigTwice.Map(ctx, p, in, pool.Chunksize(3))
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if !bytes.Equal(got[i], append(bytes.Clone(in[i]), in[i]...)) {
			t.Fatalf("twice %d of %d bytes wrong", i, len(in[i]))
		}
	}
	keep := make([][]byte, len(in))
	for i := range in {
		keep[i] = bytes.Clone(in[i])
	}
	sums, err := bigScribble.Map(ctx, p, in, pool.Chunksize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		want := 0
		for k := 0; k < len(keep[i]); k += 4096 {
			want += int(keep[i][k])
		}
		if sums[i] != want || !bytes.Equal(in[i], keep[i]) {
			t.Fatalf("scribble %d: sum %d, want %d; input unchanged %v", i, sums[i], want, bytes.Equal(in[i], keep[i]))
		}
	}
	strs := []string{strings.Repeat("ab", th/2), strings.Repeat("x", th+1), "small", strings.Repeat("é", 1<<20)}
	gotS, err := bigStr.Map(ctx, p, strs, pool.Chunksize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range strs {
		if gotS[i] != strs[i]+"!" {
			t.Fatalf("string %d of %d bytes changed", i, len(strs[i]))
		}
	}
	arrs := make([]bigArr, 3)
	for i := range arrs {
		for k := range arrs[i] {
			arrs[i][k] = float64(i*k) / 3
		}
	}
	gotA, err := bigArrEcho.Map(ctx, p, arrs, pool.Chunksize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range arrs {
		arrs[i][0]++
	}
	if d := cmp.Diff(arrs, gotA); d != "" {
		t.Fatalf("plain data (-want +got):\n%s", d)
	}
	p.Terminate()
	if k := frameMappings(t); k != 0 {
		t.Fatalf("%d shared-memory segments still mapped after Terminate", k)
	}
}

// TestBigTransferKilled: workers SIGKILLed again and again while large
// arguments and results cross through shared memory (both ways at once);
// the tasks that die are retried, each result is its argument, and once
// the pool is gone no descriptor, mapping or /dev/shm entry is left.
func TestBigTransferKilled(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckShm(t)
	mptest.CheckChildren(t)
	ctx := context.Background()
	p := newPool(t, pool.Workers(2), pool.SharedMemory(0), pool.Retries(100))
	var in [][]byte
	for i := range 24 {
		in = append(in, bigPattern(4<<20+i, byte(i)))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	kills := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-time.After(7 * time.Millisecond):
			}
			if pids := p.Pids(); len(pids) > 0 {
				if syscall.Kill(pids[k%len(pids)], syscall.SIGKILL) == nil {
					kills++
				}
			}
		}
	}()
	for round := range 3 {
		got, err := bigEcho.Map(ctx, p, in, pool.Chunksize(1))
		if err != nil && !errors.Is(err, pool.ErrWorkerDied) {
			t.Fatalf("round %d: %v", round, err)
		}
		for i := range in {
			if got[i] != nil && !bytes.Equal(got[i], in[i]) {
				t.Fatalf("round %d: item %d changed", round, i)
			}
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d workers killed", kills)
	// The pool goes on.
	got, err := bigEcho.Map(ctx, p, in[:4], pool.Chunksize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if !bytes.Equal(got[i], in[i]) {
			t.Fatalf("item %d changed after the kills", i)
		}
	}
	p.Terminate()
	if k := frameMappings(t); k != 0 {
		t.Fatalf("%d shared-memory segments still mapped after Terminate", k)
	}
}
