// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/base/race"
	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/pool"
)

// mustReturn runs fn and fails the test with a clear message if it has
// not returned within a minute (a generous ceiling), rather than hanging
// until the test binary's timeout. fn may call t.Error, not t.Fatal.
func mustReturn(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%s did not return within a minute", what)
	}
}

// The caller of Future.Get may receive its result from the worker itself
// (a direct read). These tests check that a result nobody waits for
// directly is still received: futures never waited on, or watched through
// Done and Ready only, the contexts of Get and of the job, and workers
// dying under a direct reader.

// Submits whose futures are not waited on do not hold up the pool: later
// calls, Close and Join go through, and Get works long after.
func TestSubmitUnobserved(t *testing.T) {
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(2))
	// One for each worker: each then holds a result nobody receives yet.
	fs := []*pool.Future[int]{square.Submit(bg, p, 3), square.Submit(bg, p, 4)}
	got, err := square.Map(bg, p, ints(1000), pool.Chunksize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != i*i {
			t.Fatalf("Map[%d] = %d", i, v)
		}
	}
	if v, err := square.Apply(bg, p, 5); v != 25 || err != nil {
		t.Errorf("Apply = %d, %v", v, err)
	}
	// A last pair that nothing else pushes out: Close and Join must.
	fs = append(fs, square.Submit(bg, p, 5), square.Submit(bg, p, 6))
	mustReturn(t, "Wait with unobserved futures", func() {
		if err := p.Wait(); err != nil {
			t.Error(err)
		}
	})
	mustReturn(t, "Get after Wait", func() {
		for i, f := range fs {
			if v, err := f.Get(bg); v != (i+3)*(i+3) || err != nil {
				t.Errorf("future %d: %d, %v", i, v, err)
			}
		}
	})
}

// A future watched through Done or Ready alone gets its result.
func TestFutureWatchedWithoutGet(t *testing.T) {
	p := newPool(t, pool.Workers(1))
	f := square.Submit(bg, p, 7)
	select {
	case <-f.Done():
	case <-time.After(time.Minute):
		t.Fatal("Done was not closed within a minute")
	}
	if !f.Ready() {
		t.Error("Ready is false after Done was closed")
	}
	f2 := square.Submit(bg, p, 8)
	for deadline := time.Now().Add(time.Minute); !f2.Ready(); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("a future polled through Ready alone got no result within a minute")
		}
	}
	for i, f := range []*pool.Future[int]{f, f2} {
		if v, err := f.Get(bg); v != (i+7)*(i+7) || err != nil {
			t.Errorf("future %d: %d, %v", i, v, err)
		}
	}
}

// Get's context ending during a direct read returns its error and leaves
// the pool working; the job's context ending ends the wait with its error.
func TestDirectReadContexts(t *testing.T) {
	p := newPool(t, pool.Workers(1))
	jctx, jcancel := context.WithCancel(bg)
	defer jcancel()
	f := sleep.Submit(jctx, p, time.Hour)
	gctx, gcancel := context.WithTimeout(bg, 10*time.Millisecond)
	defer gcancel()
	if _, err := f.Get(gctx); err != context.DeadlineExceeded {
		t.Fatalf("Get(short deadline) = %v", err)
	}
	// The job's context ends while (or before) Get reads directly.
	f2 := sleep.Submit(jctx, p, time.Hour)
	go jcancel()
	mustReturn(t, "Get of a future whose job's context ended", func() {
		if _, err := f2.Get(bg); err != context.Canceled {
			t.Errorf("Get after the job's context ended = %v", err)
		}
		if _, err := f.Get(bg); err != context.Canceled {
			t.Errorf("first future = %v", err)
		}
	})
	for i := range 100 {
		if v, err := square.Apply(bg, p, i); v != i*i || err != nil {
			t.Fatalf("Apply(%d) after the cancellations: %d, %v", i, v, err)
		}
	}
}

// Callers submitting and waiting from several goroutines while workers
// are killed: every Get returns, with the result or ErrWorkerDied.
func TestDirectReadChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("kills workers")
	}
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(2), pool.Retries(1))
	stop := make(chan struct{})
	killed := make(chan struct{})
	kills := 0
	go func() {
		defer close(killed)
		for range 10 {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if pids := p.Pids(); len(pids) > 0 {
				if syscall.Kill(pids[rand.IntN(len(pids))], syscall.SIGKILL) == nil {
					kills++
				}
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	died, n := 0, 0
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// At least 500 tasks each, and on until the kills are over.
			for i := 0; ; i++ {
				if i >= 500 {
					select {
					case <-killed:
						return
					default:
					}
				}
				mu.Lock()
				n++
				mu.Unlock()
				x := g*1_000_000 + i
				v, err := square.Submit(bg, p, x).Get(bg)
				switch {
				case errors.Is(err, pool.ErrWorkerDied):
					mu.Lock()
					died++
					mu.Unlock()
				case err != nil || v != x*x:
					t.Errorf("square(%d) = %d, %v", x, v, err)
					return
				}
			}
		}()
	}
	mustReturn(t, "the callers' Gets under SIGKILLs", wg.Wait)
	close(stop)
	<-killed
	t.Logf("%d kills; %d of %d tasks failed with their worker", kills, died, n)
	if v, err := square.Apply(bg, p, 9); v != 81 || err != nil {
		t.Errorf("after the kills: %d, %v", v, err)
	}
}

// The death of an idle worker (whose reader goroutine is not receiving)
// is seen at once: it is replaced without any call on the pool.
func TestIdleWorkerDeath(t *testing.T) {
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(1))
	if v, err := square.Apply(bg, p, 3); v != 9 || err != nil {
		t.Fatalf("Apply = %d, %v", v, err)
	}
	old := p.Pids()[0]
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitPids(t, p, 1, []int{old}) // fails after a minute, clearly
	if v, err := square.Apply(bg, p, 4); v != 16 || err != nil {
		t.Errorf("Apply on the replacement = %d, %v", v, err)
	}
}

// Terminate while a caller may be receiving its result directly: the
// caller gets ErrTerminated and nothing hangs.
func TestTerminateDirectReader(t *testing.T) {
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(1), pool.KillGrace(50*time.Millisecond))
	f := stubborn.Submit(bg, p, time.Hour)
	errc := make(chan error, 1)
	go func() {
		_, err := f.Get(bg)
		errc <- err
	}()
	mustReturn(t, "Terminate under a direct reader", func() {
		if err := p.Terminate(); err != nil {
			t.Error(err)
		}
	})
	select {
	case err := <-errc:
		if err != pool.ErrTerminated {
			t.Errorf("Get = %v, want ErrTerminated", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Get did not return within a minute of Terminate")
	}
}

// Workers retired after every task (MaxTasksPerChild(1)) while callers
// submit one task at a time: each result arrives, each from a new worker.
func TestDirectReadRetiring(t *testing.T) {
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(1), pool.MaxTasksPerChild(1))
	seen := map[int]bool{}
	for i := range 10 {
		w, err := pid.Submit(bg, p, i).Get(bg)
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
		if seen[w] {
			t.Fatalf("task %d ran on worker %d again", i, w)
		}
		seen[w] = true
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A Submit and its Get, read directly by the caller, allocate three
// objects in the caller's process: the submission (future, job, chunk and
// input together), the input boxed as the chunk's inputs, and the
// chunk's frame, made in place in one buffer of its size.
func TestSubmitGetAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector allocates")
	}
	p := newPool(t, pool.Workers(1))
	get := func() {
		if v, err := square.Submit(bg, p, 3).Get(bg); v != 9 || err != nil {
			t.Fatalf("Submit(3).Get = %d, %v", v, err)
		}
	}
	for range 10 {
		get() // the worker started, buffers grown
	}
	if n := testing.AllocsPerRun(200, get); n > 3 {
		t.Errorf("a Submit and its Get allocate %.2f objects, want at most 3", n)
	}
}
