// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/pool"
)

// Tasks of large values: their arguments and results cross through
// shared memory when a chunk's encoding is over the threshold.
var (
	bigLen  = pool.Register("test.big.len", func(ctx context.Context, b []byte) (int, error) { return len(b) + int(probe(b)), nil })
	bigEcho = pool.Register("test.big.echo", func(ctx context.Context, b []byte) ([]byte, error) { return b, nil })
	bigRec  = pool.Register("test.big.record", func(ctx context.Context, r bigRecord) (bigRecord, error) {
		r.Name += "!"
		return r, nil
	})
	// bigDie kills its worker once it holds a large argument, and echoes
	// it on a retry.
	bigDie = pool.Register("test.big.die", func(ctx context.Context, b []byte) ([]byte, error) {
		if os.Getenv("TEST_BIG_DIE") == "" && len(b) > 0 && b[0] == 0xde {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		return b, nil
	})
)

type bigRecord struct {
	Name   string
	Ints   []int64
	Chunks [][]byte
}

// probe sums a few bytes spread over b (cheap, so that a benchmark of
// bigLen measures the transfer, not the task).
func probe(b []byte) byte {
	var s byte
	for i := 0; i < len(b); i += 1 + len(b)/61 {
		s += b[i] * byte(i|1)
	}
	return s
}

func bigPattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ byte(i>>9) ^ seed
	}
	return b
}

// frameMappings counts this process's mappings of ipc's shared-memory
// segments.
func frameMappings(t testing.TB) int {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "multiproc-ipc-frame")
}

// TestBigValues: arguments and results of every size around the
// threshold (a chunk of one []byte encodes as its bytes plus a length)
// come back as they went, with shared memory on, off, and at its edges.
func TestBigValues(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckShm(t)
	const th = 64 << 10
	sizes := []int{0, 1, th - 64, th - 1, th, th + 1, 4 << 20}
	for _, tt := range []struct {
		name string
		opt  pool.Option
	}{
		{"threshold", pool.SharedMemory(th)},
		{"default", pool.SharedMemory(0)},
		{"off", pool.SharedMemory(-1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			p := newPool(t, pool.Workers(2), tt.opt)
			var in [][]byte
			for i, n := range sizes {
				in = append(in, bigPattern(n, byte(i)))
			}
			got, err := bigEcho.Map(ctx, p, in, pool.Chunksize(1))
			if err != nil {
				t.Fatal(err)
			}
			for i := range in {
				if !bytes.Equal(got[i], in[i]) {
					t.Fatalf("echo of %d bytes changed", len(in[i]))
				}
			}
			lens, err := bigLen.Map(ctx, p, in, pool.Chunksize(2))
			if err != nil {
				t.Fatal(err)
			}
			for i := range in {
				if want := len(in[i]) + int(probe(in[i])); lens[i] != want {
					t.Fatalf("len of %d bytes: got %d, want %d", len(in[i]), lens[i], want)
				}
			}
			r, err := bigEcho.Submit(ctx, p, in[len(in)-1]).Get(ctx)
			if err != nil || !bytes.Equal(r, in[len(in)-1]) {
				t.Fatalf("Submit: %v", err)
			}
			want := bigRecord{Name: "r"}
			for i := range 100_000 {
				want.Ints = append(want.Ints, int64(i)*-9)
			}
			for i := range 8 {
				want.Chunks = append(want.Chunks, bigPattern(40_000+i, byte(i)))
			}
			gotR, err := bigRec.Apply(ctx, p, want)
			if err != nil {
				t.Fatal(err)
			}
			want.Name += "!"
			if d := cmp.Diff(want, gotR); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
			// Segments stay mapped for reuse while the workers live, and
			// only when shared memory is on.
			if k := frameMappings(t); (k > 0) != (tt.name != "off") {
				t.Fatalf("%d shared-memory segments mapped with SharedMemory %s", k, tt.name)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if err := p.Join(ctx); err != nil {
				t.Fatal(err)
			}
			if k := frameMappings(t); k != 0 {
				t.Fatalf("%d shared-memory segments still mapped after Join", k)
			}
		})
	}
}

// TestBigValueWorkerKilled: a worker SIGKILLed while it holds a large
// argument received through shared memory fails that task with
// ErrWorkerDied; the others complete, and once the pool is gone no
// descriptor, mapping or /dev/shm entry is left.
func TestBigValueWorkerKilled(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckShm(t)
	mptest.CheckChildren(t)
	ctx := context.Background()
	p := newPool(t, pool.Workers(2), pool.SharedMemory(0))
	var in [][]byte
	for i := range 6 {
		in = append(in, bigPattern(2<<20, byte(i)))
	}
	in[3][0] = 0xde
	got, err := bigDie.Map(ctx, p, in, pool.Chunksize(1))
	if !errors.Is(err, pool.ErrWorkerDied) {
		t.Fatalf("got %v, want ErrWorkerDied", err)
	}
	_ = got
	// The pool goes on with a replacement worker.
	out, err := bigEcho.Map(ctx, p, in[:3], pool.Chunksize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range out {
		if !bytes.Equal(out[i], in[i]) {
			t.Fatalf("item %d changed after the death", i)
		}
	}
	p.Terminate()
	if k := frameMappings(t); k != 0 {
		t.Fatalf("%d shared-memory segments still mapped after Terminate", k)
	}
}
