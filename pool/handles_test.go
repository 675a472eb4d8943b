// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/queue"
	"github.com/multiproc/multiproc/shm"
	"github.com/multiproc/multiproc/syncprim"
)

// counterShared is what the counter pool's workers share: a lock and a
// counter in shared memory (Python's initargs=(lock, value)).
type counterShared struct {
	Lock  *syncprim.Lock
	Count *shm.Value[int64]
}

var (
	// counter is set in each worker by counterInit.
	counter     counterShared
	counterInit = pool.Register("test.counter.init", func(ctx context.Context, s counterShared) (struct{}, error) {
		counter = s
		return struct{}{}, nil
	})
	// counterAdd increments the counter under the lock, as a load and a
	// store (not atomic): only the lock keeps increments from being lost.
	counterAdd = pool.Register("test.counter.add", func(ctx context.Context, _ int) (int, error) {
		if err := counter.Lock.Acquire(ctx); err != nil && !errors.Is(err, syncprim.ErrOwnerDead) {
			return 0, err
		}
		v := counter.Count.Load()
		for range 100 {
			runtimeYield()
		}
		counter.Count.Store(v + 1)
		return os.Getpid(), counter.Lock.Release()
	})
	// counterHoldAndDie takes the lock and kills its worker.
	counterHoldAndDie = pool.Register("test.counter.holddie", func(ctx context.Context, _ int) (int, error) {
		if err := counter.Lock.Acquire(ctx); err != nil {
			return 0, err
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	})
	// counterTake acquires and releases the lock, and says how.
	counterTake = pool.Register("test.counter.take", func(ctx context.Context, _ int) (string, error) {
		err := counter.Lock.Acquire(ctx)
		switch {
		case errors.Is(err, syncprim.ErrOwnerDead):
			counter.Lock.Release()
			return "owner dead", nil
		case err != nil:
			return "", err
		}
		return "ok", counter.Lock.Release()
	})
)

func runtimeYield() { syscall.Getpid() }

func newCounter(t *testing.T) counterShared {
	t.Helper()
	l, err := syncprim.NewLock()
	if err != nil {
		t.Fatal(err)
	}
	v, err := shm.NewValue[int64](0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); v.Close() })
	return counterShared{Lock: l, Count: v}
}

// Workers share a Lock and a Value through the Initializer and
// increment under the lock: no increment is lost. MaxTasksPerChild
// recycles workers all along, so most increments run in workers started
// after New, which got the handles again.
func TestInitializerHandlesLockAndValue(t *testing.T) {
	ctx := testCtx(t)
	s := newCounter(t)
	p, err := pool.New(ctx, pool.Workers(3), pool.Initializer(counterInit, s), pool.MaxTasksPerChild(25))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Terminate()
	const n = 300
	pids, err := counterAdd.Map(ctx, p, make([]int, n), pool.Chunksize(5))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Count.Load(); got != n {
		t.Fatalf("count = %d, want %d", got, n)
	}
	distinct := map[int]bool{}
	for _, pid := range pids {
		distinct[pid] = true
	}
	if len(distinct) <= 3 {
		t.Fatalf("%d distinct workers ran the tasks; want recycled workers too (more than 3)", len(distinct))
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A worker dies (SIGKILL) holding the shared Lock; its replacement,
// which got the Lock from the Initializer again, sees ErrOwnerDead.
func TestInitializerHandlesOwnerDead(t *testing.T) {
	ctx := testCtx(t)
	s := newCounter(t)
	p, err := pool.New(ctx, pool.Workers(1), pool.Initializer(counterInit, s))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Terminate()
	if _, err := counterHoldAndDie.Apply(ctx, p, 0); !errors.Is(err, pool.ErrWorkerDied) {
		t.Fatalf("holddie: %v, want ErrWorkerDied", err)
	}
	got, err := counterTake.Apply(ctx, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got != "owner dead" {
		t.Fatalf("the next holder saw %q, want owner dead", got)
	}
	if got, err := counterTake.Apply(ctx, p, 0); err != nil || got != "ok" {
		t.Fatalf("then: %q, %v; want ok", got, err)
	}
}

// allHandles has a field of each kind of handle the pool's packages
// offer (a manager proxy is the same mechanism; manager imports pool, so
// its test lives there), a plain field, a nested struct and a nil handle.
type allHandles struct {
	Tag    string
	Conn   *ipc.Conn
	Queue  *queue.Queue[int]
	Seg    *shm.Segment
	Arr    *shm.Array[int64]
	Event  *syncprim.Event
	Sem    *syncprim.Semaphore
	Bar    *syncprim.Barrier
	Simple *queue.SimpleQueue[string]
	Nested struct {
		N     int
		RLock *syncprim.RLock
	}
	Missing *syncprim.Lock
}

var (
	all     allHandles
	allInit = pool.Register("test.all.init", func(ctx context.Context, a *allHandles) (struct{}, error) {
		all = *a
		return struct{}{}, nil
	})
	allProbe = pool.Register("test.all.probe", func(ctx context.Context, _ int) (string, error) {
		if all.Missing != nil {
			return "", errors.New("Missing is not nil")
		}
		if err := all.Nested.RLock.Acquire(ctx); err != nil {
			return "", err
		}
		all.Nested.RLock.Release()
		if err := all.Sem.Acquire(ctx); err != nil {
			return "", err
		}
		if err := all.Queue.Put(ctx, os.Getpid()); err != nil {
			return "", err
		}
		if err := all.Conn.SendBytes(ctx, []byte("hello from "+strconv.Itoa(os.Getpid()))); err != nil {
			return "", err
		}
		all.Arr.Set(1, 42)
		if _, err := all.Bar.Wait(ctx); err != nil {
			return "", err
		}
		if err := all.Simple.Put(ctx, "simple"); err != nil {
			return "", err
		}
		if err := all.Event.Set(); err != nil {
			return "", err
		}
		return all.Tag + "/" + strconv.Itoa(all.Nested.N) + "/" + string(all.Seg.Bytes()[:5]), nil
	})
)

// Each kind of handle reaches a worker through the Initializer and works
// there.
func TestInitializerHandleTypes(t *testing.T) {
	ctx := testCtx(t)
	var a allHandles
	var err error
	mine, theirs, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	defer theirs.Close()
	a.Conn = theirs
	if a.Queue, err = queue.New[int](); err != nil {
		t.Fatal(err)
	}
	defer a.Queue.Close()
	if a.Seg, err = shm.New(4096); err != nil {
		t.Fatal(err)
	}
	defer a.Seg.Close()
	copy(a.Seg.Bytes(), "shm!!")
	if a.Arr, err = shm.NewArray[int64](4); err != nil {
		t.Fatal(err)
	}
	defer a.Arr.Close()
	if a.Event, err = syncprim.NewEvent(); err != nil {
		t.Fatal(err)
	}
	defer a.Event.Close()
	if a.Sem, err = syncprim.NewSemaphore(1); err != nil {
		t.Fatal(err)
	}
	defer a.Sem.Close()
	if a.Bar, err = syncprim.NewBarrier(1); err != nil {
		t.Fatal(err)
	}
	defer a.Bar.Close()
	if a.Simple, err = queue.NewSimple[string](); err != nil {
		t.Fatal(err)
	}
	defer a.Simple.Close()
	if a.Nested.RLock, err = syncprim.NewRLock(); err != nil {
		t.Fatal(err)
	}
	defer a.Nested.RLock.Close()
	a.Tag, a.Nested.N = "tag", 7

	p, err := pool.New(ctx, pool.Workers(1), pool.Initializer(allInit, &a))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Terminate()
	got, err := allProbe.Apply(ctx, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := "tag/7/shm!!"; got != want {
		t.Fatalf("probe = %q, want %q", got, want)
	}
	wpid, err := a.Queue.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mine.RecvBytes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello from " + strconv.Itoa(wpid); string(b) != want {
		t.Fatalf("conn: %q, want %q", b, want)
	}
	if s, err := a.Simple.Get(ctx); err != nil || s != "simple" {
		t.Fatalf("simple queue: %q, %v", s, err)
	}
	if !a.Event.IsSet() || a.Arr.At(1) != 42 || a.Sem.Value() != 0 {
		t.Fatalf("event set %v, arr[1] %d, semaphore %d; want true, 42, 0", a.Event.IsSet(), a.Arr.At(1), a.Sem.Value())
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}

var lockArg = pool.Register("test.lockarg", func(ctx context.Context, l *syncprim.Lock) (int, error) { return 0, nil })

// Handles other than shm's do not travel in task arguments: the task
// fails with ErrHandleArg, and a ThreadPool (one process) takes them.
func TestTaskHandleArgRefused(t *testing.T) {
	ctx := testCtx(t)
	l, err := syncprim.NewLock()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p, err := pool.New(ctx, pool.Workers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Terminate()
	if _, err := lockArg.Apply(ctx, p, l); !errors.Is(err, pool.ErrHandleArg) {
		t.Fatalf("Apply with a Lock argument: %v, want ErrHandleArg", err)
	}
	tp, err := pool.NewThreadPool(ctx, pool.Workers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Terminate()
	if _, err := lockArg.Apply(ctx, tp, l); err != nil {
		t.Fatalf("ThreadPool: %v", err)
	}
}

type lockSlice struct{ Locks []*syncprim.Lock }

var lockSliceInit = pool.Register("test.locks.init", func(ctx context.Context, s lockSlice) (int, error) { return 0, nil })

func TestInitializerHandlesInSliceRefused(t *testing.T) {
	_, err := pool.New(testCtx(t), pool.Workers(1), pool.Initializer(lockSliceInit, lockSlice{}))
	if err == nil {
		t.Fatal("New with handles in a slice: no error")
	}
	t.Log(err)
}

// testCtx bounds a test's waits generously (a slow, shared machine).
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(bg, 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
