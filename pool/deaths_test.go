// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/pool"
)

// A worker's death costs the task it was running, not its chunk: 20
// random SIGKILLs during a Map of 10,000 tasks with the default chunksize
// (1,250 tasks a chunk on 2 workers) fail at most one task each without
// retries, and none with Retries(3).
func TestChaosDefaultChunks(t *testing.T) {
	if testing.Short() {
		t.Skip("kills workers")
	}
	for _, retries := range []int{0, 3} {
		t.Run(map[int]string{0: "noretry", 3: "retries3"}[retries], func(t *testing.T) {
			mptest.CheckChildren(t)
			p := newPool(t, pool.Workers(2), pool.Retries(retries))
			const n, kills = 10_000, 20
			in := make([]time.Duration, n)
			for i := range in {
				in[i] = 200 * time.Microsecond
			}
			stop := make(chan struct{})
			var killed int
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for killed < kills {
					select {
					case <-stop:
						return
					case <-time.After(time.Duration(5+rand.IntN(15)) * time.Millisecond):
					}
					if pids := p.Pids(); len(pids) > 0 && syscall.Kill(pids[rand.IntN(len(pids))], syscall.SIGKILL) == nil {
						killed++
					}
				}
			}()
			var last pool.Progress
			got, err := sleep.Map(bg, p, in, pool.OnProgress(func(pr pool.Progress) { last = pr }))
			close(stop)
			wg.Wait()
			if err != nil && !errors.Is(err, pool.ErrWorkerDied) {
				t.Fatalf("Map = %v", err)
			}
			ok := 0
			for _, v := range got {
				if v > 0 {
					ok++
				}
			}
			t.Logf("%d kills: %d tasks failed, %d ok", killed, last.Failed, ok)
			if killed != kills {
				t.Fatalf("only %d kills happened during the Map", killed)
			}
			if last.Done != n || ok+last.Failed != n {
				t.Errorf("progress %+v, %d ok: every task should end once", last, ok)
			}
			if limit := map[int]int{0: kills, 3: 0}[retries]; last.Failed > limit {
				t.Errorf("%d tasks failed with their worker, want at most %d", last.Failed, limit)
			}
		})
	}
}

// step sleeps for its Sleep, then returns its worker's pid, or kills its
// worker when Die is set.
type stepArg struct {
	Sleep time.Duration
	Die   bool
}

var step = pool.Register("test.step", func(ctx context.Context, a stepArg) (int, error) {
	if a.Die {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	time.Sleep(a.Sleep)
	return os.Getpid(), nil
})

// Inside one chunk, a worker's death costs only the task that was running:
// the tasks after it run again, uncharged, on the replacement; with
// retries, the culprit is charged once per worker it kills.
func TestDeathInsideChunk(t *testing.T) {
	mptest.CheckChildren(t)
	in := []int{1, 2, -1, 4, 5, 6}
	for _, retries := range []int{0, 2} {
		p := newPool(t, pool.Workers(2), pool.Retries(retries))
		got, err := suicide.Map(bg, p, in, pool.Chunksize(len(in)))
		var de *pool.WorkerDiedError
		if !errors.As(err, &de) || de.Attempts != retries+1 || de.Signal != syscall.SIGKILL || !slices.Equal(got, []int{1, 2, 0, 4, 5, 6}) {
			t.Errorf("Retries(%d): Map = %v, %v; want only the task that killed its worker to fail, after %d attempts", retries, got, err, retries+1)
		}
	}
}

// The results of a long chunk's finished tasks reach the pool as they
// finish (partial results): when the worker dies in the middle of the
// chunk, they are kept, not run again.
func TestDeathKeepsAnsweredTasks(t *testing.T) {
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(1))
	first := p.Pids()[0]
	in := make([]stepArg, 20)
	for i := range 10 {
		in[i].Sleep = 10 * time.Millisecond
	}
	in[10].Die = true
	got, err := step.Map(bg, p, in, pool.Chunksize(len(in)))
	if !errors.Is(err, pool.ErrWorkerDied) {
		t.Fatalf("Map = %v, want ErrWorkerDied", err)
	}
	kept := 0
	for i, v := range got {
		switch {
		case i == 10:
			if v != 0 {
				t.Errorf("the task that killed its worker has a result")
			}
		case i < 10 && v == first:
			kept++
		case v == 0 || v == first:
			t.Errorf("task %d: result %d (first worker %d)", i, v, first)
		}
	}
	// The first partial result leaves once the chunk has run 1 ms; the
	// tasks before 10 ran 100 ms in all.
	if kept == 0 {
		t.Errorf("no result of the tasks the dead worker finished was kept: %v", got)
	}
	t.Logf("%d of the 10 finished tasks kept", kept)
}

// Through StartCall (chunks that arrive encoded, as the cluster's agents
// send them), a death inside a chunk costs its task alone too: the rest
// of the chunk is cut from its encoded inputs, and the partial results
// the dead worker sent are pieced together with the others.
func TestRunnerDeathInsideChunk(t *testing.T) {
	mptest.CheckChildren(t)
	r := loopback{newPool(t, pool.Workers(1))}
	got, err := suicide.Map(bg, r, []int{1, 2, -1, 4, 5, 6}, pool.Chunksize(6))
	if !errors.Is(err, pool.ErrWorkerDied) || !slices.Equal(got, []int{1, 2, 0, 4, 5, 6}) {
		t.Errorf("Map = %v, %v; want only the task that killed its worker to fail", got, err)
	}
	in := make([]stepArg, 20)
	for i := range 10 {
		in[i].Sleep = 5 * time.Millisecond
	}
	in[10].Die = true
	res, err := step.Map(bg, r, in, pool.Chunksize(len(in)))
	if !errors.Is(err, pool.ErrWorkerDied) {
		t.Fatalf("Map = %v, want ErrWorkerDied", err)
	}
	for i, v := range res {
		if (i == 10) != (v == 0) {
			t.Errorf("task %d: result %d; want only task 10 to fail (%v)", i, v, res)
		}
	}
}
