// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/pool"
)

var volume = pool.Register3("test.volume", func(ctx context.Context, a, b, c int) (int, error) { return a * b * c, nil })

// long is longer than any test may take: a task that sleeps for it ends
// only when cancelled.
const long = 10 * time.Minute

// busy gives the only worker of p as many sleeping tasks as the pool
// sends a worker ahead (128 tasks), so that what is submitted next stays
// in the pool's queue.
func busy(ctx context.Context, p *pool.Pool, d time.Duration) []*pool.Future[int] {
	fs := make([]*pool.Future[int], 128)
	for i := range fs {
		fs[i] = sleep.Submit(ctx, p, d)
	}
	return fs
}

// Cancel removes a queued task (it never runs) and cancels a running one
// through its context, and says which; a finished future is left alone.
func TestFutureCancel(t *testing.T) {
	ctx := testCtx(t)
	for _, thread := range []bool{false, true} {
		var p *pool.Pool
		var err error
		if thread {
			p, err = pool.NewThreadPool(ctx, pool.Workers(1))
		} else {
			// Every task here honours its context: none may be killed,
			// and the worker must stay the same. The default kill grace
			// (1s for the worker to answer the cancellations of all the
			// tasks it holds) is a bound a loaded machine can outrun.
			p, err = pool.New(ctx, pool.Workers(1), pool.KillGrace(time.Minute))
		}
		if err != nil {
			t.Fatal(err)
		}
		blockers := busy(ctx, p, long)
		queued := square.Submit(ctx, p, 3)
		if got := queued.Cancel(); got != pool.CancelledQueued {
			t.Fatalf("thread %v: Cancel of a queued task: %v, want %v", thread, got, pool.CancelledQueued)
		}
		if _, err := queued.Get(ctx); !errors.Is(err, pool.ErrCancelled) || !queued.Cancelled() {
			t.Fatalf("thread %v: Get after Cancel: %v", thread, err)
		}
		for _, b := range blockers {
			if got := b.Cancel(); got != pool.CancelledRunning {
				t.Fatalf("thread %v: Cancel of a task the worker has: %v, want %v", thread, got, pool.CancelledRunning)
			}
		}
		// MapAsync's call ends through its context.
		m := sleep.MapAsync(ctx, p, []time.Duration{long, long})
		if got := m.Cancel(); got != pool.CancelledRunning {
			t.Fatalf("thread %v: Cancel of MapAsync: %v, want %v", thread, got, pool.CancelledRunning)
		}
		if _, err := m.Get(ctx); !errors.Is(err, pool.ErrCancelled) {
			t.Fatalf("thread %v: MapAsync after Cancel: %v", thread, err)
		}
		// A task the worker has: its context ends, it returns, the worker
		// is free again (not killed: the same pid answers).
		// (The worker runs its tasks in order: once this one is answered,
		// the cancelled ones are too, and the worker is idle.)
		if n, err := square.Apply(ctx, p, 2); err != nil || n != 4 {
			t.Fatalf("thread %v: Apply: %d, %v", thread, n, err)
		}
		pids := p.Pids()
		running := sleep.Submit(ctx, p, long)
		if got := running.Cancel(); got != pool.CancelledRunning {
			t.Fatalf("thread %v: Cancel of a running task: %v, want %v", thread, got, pool.CancelledRunning)
		}
		if _, err := running.Get(ctx); !errors.Is(err, pool.ErrCancelled) {
			t.Fatalf("thread %v: Get after Cancel: %v", thread, err)
		}
		// Cancel while another goroutine waits in Get (receiving the
		// result itself from the worker, on a process pool).
		waited := sleep.Submit(bg, p, long)
		got := make(chan error, 1)
		go func() {
			_, err := waited.Get(bg)
			got <- err
		}()
		time.Sleep(5 * time.Millisecond) // let Get start waiting (either way the test holds)
		if out := waited.Cancel(); out != pool.CancelledRunning {
			t.Fatalf("thread %v: Cancel during Get: %v", thread, out)
		}
		if err := <-got; !errors.Is(err, pool.ErrCancelled) {
			t.Fatalf("thread %v: Get during Cancel: %v", thread, err)
		}
		if n, err := square.Apply(ctx, p, 4); err != nil || n != 16 {
			t.Fatalf("thread %v: then Apply: %d, %v", thread, n, err)
		}
		if !thread && !slices.Equal(p.Pids(), pids) {
			t.Fatalf("the worker was replaced (%v, then %v): the cancelled task should have returned", pids, p.Pids())
		}
		done := square.Submit(ctx, p, 5)
		if _, err := done.Get(ctx); err != nil {
			t.Fatal(err)
		}
		if got := done.Cancel(); got != pool.NotCancelled || done.Cancelled() {
			t.Fatalf("thread %v: Cancel of a finished future: %v", thread, got)
		}
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAsCompletedAndWait(t *testing.T) {
	ctx := testCtx(t)
	p, err := pool.New(ctx, pool.Workers(2))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Terminate()
	fs := []*pool.Future[int]{
		sleep.Submit(ctx, p, 50*time.Millisecond),
		sleep.Submit(ctx, p, time.Millisecond),
		sleep.Submit(ctx, p, 20*time.Millisecond),
	}
	var got []*pool.Future[int]
	for f := range pool.AsCompleted(ctx, fs...) {
		if !f.Ready() {
			t.Fatal("AsCompleted yielded a future without its result")
		}
		got = append(got, f)
	}
	if len(got) != len(fs) {
		t.Fatalf("AsCompleted yielded %d futures, want %d", len(got), len(fs))
	}
	for _, f := range fs {
		if !slices.Contains(got, f) {
			t.Fatal("AsCompleted missed a future")
		}
	}
	if err := pool.WaitAll(ctx, fs...); err != nil {
		t.Fatal(err)
	}

	// WaitFirst returns the one that finishes; WaitAll gives up with its
	// context; AsCompleted stops with it.
	slow := sleep.Submit(ctx, p, long)
	fast := square.Submit(ctx, p, 6)
	first, err := pool.WaitFirst(ctx, slow, fast)
	if err != nil || first != fast {
		t.Fatalf("WaitFirst: %v, %v; want the fast future", first, err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := pool.WaitAll(short, slow, fast); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitAll with a slow future: %v, want DeadlineExceeded", err)
	}
	n := 0
	for range pool.AsCompleted(short, fast, slow) {
		n++
	}
	if n != 1 || short.Err() == nil {
		t.Fatalf("AsCompleted after its context ended: %d futures, ctx err %v", n, short.Err())
	}
	if _, err := pool.WaitFirst(short, slow); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFirst of a slow future: %v", err)
	}
	slow.Cancel()
}

// Shutdown(ctx, true) lets running tasks finish and fails the queued
// ones with ErrCancelled (Python's shutdown(cancel_futures=True)).
func TestShutdownCancelPending(t *testing.T) {
	ctx := testCtx(t)
	p, err := pool.New(ctx, pool.Workers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Terminate()
	// The worker runs a task the test holds, and holds as many
	// tasks behind it as it takes (minHeldTasks); the task submitted
	// after them stays in the pool's queue until the test lets the first go. No
	// timing decides which is which.
	open := filepath.Join(t.TempDir(), "open")
	running := []*pool.Future[int]{held.Submit(ctx, p, open)}
	mptest.WaitFile(t, open+".running")
	for range 127 {
		running = append(running, square.Submit(ctx, p, 2))
	}
	queued := square.Submit(ctx, p, 7)
	shut := make(chan error, 1)
	go func() { shut <- p.Shutdown(ctx, true) }()
	if _, err := queued.Get(ctx); !errors.Is(err, pool.ErrCancelled) {
		t.Fatalf("queued future after Shutdown: %v, want ErrCancelled", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a task still ran", err)
	default:
	}
	mptest.OpenGate(t, open)
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	for _, f := range running {
		if _, err := f.Get(ctx); err != nil {
			t.Fatalf("a task the worker had: %v, want it finished", err)
		}
	}
	if _, err := square.Apply(ctx, p, 1); !errors.Is(err, pool.ErrClosed) {
		t.Fatalf("Apply after Shutdown: %v, want ErrClosed", err)
	}
}

func TestStarmapAsync(t *testing.T) {
	ctx := testCtx(t)
	p, err := pool.New(ctx, pool.Workers(2))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Terminate()
	in := []pool.Args3[int, int, int]{{A: 1, B: 2, C: 3}, {A: 4, B: 5, C: 6}}
	got, err := pool.Starmap(ctx, p, volume, in)
	if err != nil || !slices.Equal(got, []int{6, 120}) {
		t.Fatalf("Starmap: %v, %v", got, err)
	}
	got, err = pool.StarmapAsync(ctx, p, volume, in).Get(ctx)
	if err != nil || !slices.Equal(got, []int{6, 120}) {
		t.Fatalf("StarmapAsync: %v, %v", got, err)
	}
	f := square.MapAsync(ctx, p, []int{1, 2, 3})
	if got, err := f.Get(ctx); err != nil || !slices.Equal(got, []int{1, 4, 9}) {
		t.Fatalf("MapAsync: %v, %v", got, err)
	}
	if f.Cancel() != pool.NotCancelled {
		t.Fatal("Cancel of a finished MapAsync cancelled it")
	}
}
