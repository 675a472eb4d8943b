// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/pool"
)

func newThreadPool(t testing.TB, opts ...pool.Option) *pool.Pool {
	t.Helper()
	p, err := pool.NewThreadPool(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Terminate() })
	return p
}

// The options that recycle worker processes have no effect on a
// ThreadPool: its workers are this process's goroutines, none is retired
// or started, and every task runs, in this process.
func TestThreadPoolProcessOptions(t *testing.T) {
	mptest.CheckChildren(t)
	p := newThreadPool(t, pool.Workers(2), pool.MaxTasksPerChild(1), pool.MaxWorkerAge(time.Millisecond),
		pool.MaxMemory(1), pool.Retries(3))
	self := os.Getpid()
	for range 3 {
		got, err := pid.Map(bg, p, ints(200), pool.Chunksize(1))
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if v != self {
				t.Fatalf("task %d ran in pid %d, want this process (%d)", i, v, self)
			}
		}
		time.Sleep(5 * time.Millisecond) // past MaxWorkerAge
	}
	if d := cmp.Diff([]int{self, self}, p.Pids()); d != "" {
		t.Errorf("Pids (-want +got):\n%s", d)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A ThreadPool is a Runner like a process pool: chunks that arrive
// encoded through StartCall (as a cluster agent sends them) are decoded
// and run on its goroutines.
func TestThreadPoolStartCall(t *testing.T) {
	r := loopback{newThreadPool(t, pool.Workers(2))}
	ctx := context.Background()
	got, err := square.Map(ctx, r, ints(500), pool.Chunksize(7))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(squares(500), got); d != "" {
		t.Fatalf("Map (-want +got):\n%s", d)
	}
	var unordered []int
	for v, err := range square.ImapUnordered(ctx, r, slices.Values(ints(100))) {
		if err != nil {
			t.Fatal(err)
		}
		unordered = append(unordered, v)
	}
	slices.Sort(unordered)
	if d := cmp.Diff(squares(100), unordered); d != "" {
		t.Fatalf("ImapUnordered (-want +got):\n%s", d)
	}
	// The failed task with the lowest index, with its own error (a
	// ThreadPool does not wrap it).
	_, err = fail.Map(ctx, r, ints(100), pool.Chunksize(10))
	if !errors.Is(err, errBoom) {
		t.Fatalf("Map of failing tasks: %v, want errBoom", err)
	}
	// An input that does not decode as the task's argument fails its
	// chunk, and the pool goes on.
	var res []pool.ChunkResult
	call, err := r.p.StartCall(ctx, "test.square", func(cr pool.ChunkResult) { res = append(res, cr) })
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	if err := call.Send(0, 3, []byte{0xff}); !errors.Is(err, pool.ErrEncode) {
		t.Fatalf("Send of a bad encoding: %v, want ErrEncode", err)
	}
	if v, err := square.Apply(ctx, r.p, 12); err != nil || v != 144 {
		t.Fatalf("Apply after a bad Send = %d, %v", v, err)
	}
}

// Terminate stops a ThreadPool whose tasks are running: their calls fail
// with ErrTerminated, their contexts end, and Terminate returns once the
// goroutines are gone.
func TestThreadPoolTerminate(t *testing.T) {
	p := newThreadPool(t, pool.Workers(2))
	ctx := testCtx(t)
	// The workers hold them (running, or next in line).
	fs := []*pool.Future[int]{sleep.Submit(ctx, p, time.Hour), sleep.Submit(ctx, p, time.Hour), sleep.Submit(ctx, p, time.Hour)}
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	for i, f := range fs {
		if _, err := f.Get(ctx); !errors.Is(err, pool.ErrTerminated) {
			t.Errorf("Submit %d after Terminate: %v, want ErrTerminated", i, err)
		}
	}
	if _, err := square.Apply(ctx, p, 2); !errors.Is(err, pool.ErrClosed) {
		t.Errorf("Apply after Terminate: %v, want ErrClosed", err)
	}
}
