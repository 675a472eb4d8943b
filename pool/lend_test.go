// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/pool"
)

// blob is a named byte slice: results of its type are lent too.
type blob []byte

var (
	// lendShape returns, by its argument's first byte, the argument
	// itself, a part of it, the argument changed in place, a small copy
	// of its own, an empty slice, a part of it after a while, or nil.
	lendShape = pool.Register("test.lend.shape", func(ctx context.Context, b []byte) ([]byte, error) {
		switch b[0] {
		case 0:
			return b, nil
		case 1:
			return b[7 : len(b)-5], nil
		case 2:
			for i := range b {
				b[i] ^= 0x5a
			}
			return b, nil
		case 3:
			return bytes.Clone(b[:100]), nil
		case 4:
			return b[:0], nil
		case 5:
			// Long enough that the results before it in its chunk go out
			// in a partial result.
			time.Sleep(15 * time.Millisecond)
			return b[3:], nil
		}
		return nil, nil
	})
	lendBlob = pool.Register("test.lend.blob", func(ctx context.Context, b []byte) (blob, error) { return blob(b[1:]), nil })
)

// lendWant is what lendShape returns for b.
func lendWant(b []byte) []byte {
	switch b[0] {
	case 0:
		return b
	case 1:
		return b[7 : len(b)-5]
	case 2:
		out := bytes.Clone(b)
		for i := range out {
			out[i] ^= 0x5a
		}
		return out
	case 3:
		return b[:100]
	case 5:
		return b[3:]
	}
	// b[:0] and nil both come back empty, not nil (as any empty []byte
	// result does).
	return []byte{}
}

// receivedMappings counts this process's mappings of shared-memory
// segments that other processes made: those whose memfd this process
// holds no descriptor of (a sender keeps its segments' descriptors; a
// receiver closes them once it has mapped them).
func receivedMappings(t testing.TB) int {
	t.Helper()
	own := map[string]bool{}
	fds, _ := filepath.Glob("/proc/self/fd/*")
	for _, fd := range fds {
		var st syscall.Stat_t
		if syscall.Stat(fd, &st) == nil {
			own[strconv.FormatUint(st.Ino, 10)] = true
		}
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && strings.Contains(line, "multiproc-ipc-frame") && !own[f[4]] {
			n++
		}
	}
	return n
}

// checkBytes compares byte slices, empty and nil apart (cmp.Diff is
// slow on large ones).
func checkBytes(t *testing.T, what string, want, got [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d slices, want %d", what, len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) || (got[i] == nil) != (want[i] == nil) {
			t.Fatalf("%s: slice %d of %d bytes (nil %v), want %d bytes (nil %v)", what, i, len(got[i]), got[i] == nil, len(want[i]), want[i] == nil)
		}
	}
}

// TestLentResults: results that lie in their argument's shared memory
// (the argument itself, a part of it, the argument changed in place)
// come back as the task returned them, mixed in one chunk with results
// of the task's own memory and empty ones, for []byte and a named byte
// slice; the caller's arguments are unchanged; and the pool copies them
// out of its own segments: it maps no segment of the workers'.
func TestLentResults(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckShm(t)
	const th = 64 << 10
	ctx := context.Background()
	for _, chunk := range []int{1, 3} {
		p := newPool(t, pool.Workers(2), pool.SharedMemory(th))
		var in, orig [][]byte
		for i := range 12 {
			b := bigPattern(th+1+i*4093, byte(i))
			b[0] = []byte{0, 1, 2, 3, 4, 6}[i%6]
			in = append(in, b)
			orig = append(orig, bytes.Clone(b))
		}
		got, err := lendShape.Map(ctx, p, in, pool.Chunksize(chunk))
		if err != nil {
			t.Fatal(err)
		}
		var want [][]byte
		for _, b := range orig {
			want = append(want, lendWant(b))
		}
		checkBytes(t, "results", want, got)
		checkBytes(t, "the caller's arguments after the call", orig, in)
		blobs, err := lendBlob.Map(ctx, p, in, pool.Chunksize(chunk))
		if err != nil {
			t.Fatal(err)
		}
		for i := range in {
			if !bytes.Equal(blobs[i], in[i][1:]) {
				t.Fatalf("chunksize %d: blob %d changed", chunk, i)
			}
		}
		// Two calls again: the segments handed back were freed and are
		// reused (a leaked one would leave too few to send).
		for range 2 {
			got, err := lendShape.Map(ctx, p, in, pool.Chunksize(chunk))
			if err != nil {
				t.Fatalf("chunksize %d, again: %v", chunk, err)
			}
			checkBytes(t, "results again", want, got)
		}
		if k := receivedMappings(t); k != 0 {
			t.Fatalf("chunksize %d: the pool mapped %d segments of its workers: results were copied into them", chunk, k)
		}
		// Tasks long enough that those before them in their chunk go out
		// in partial results. (While a task runs long, the worker reads
		// the next chunks as copies: their results are not lent.)
		for i := range in {
			in[i][0] = byte(5 * (i % 2))
		}
		want = want[:0]
		for _, b := range in {
			want = append(want, lendWant(b))
		}
		got, err = lendShape.Map(ctx, p, in, pool.Chunksize(chunk))
		if err != nil {
			t.Fatal(err)
		}
		checkBytes(t, "results after partial results", want, got)
		p.Terminate()
	}
	if k := frameMappings(t); k != 0 {
		t.Fatalf("%d shared-memory segments still mapped after Terminate", k)
	}
}
