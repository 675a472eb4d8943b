// SPDX-License-Identifier: Apache-2.0

package syncprim_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/shm"
	"github.com/multiproc/multiproc/syncprim"
)

// addUnderLock runs in child processes: it increments a shared counter n
// times, each read-modify-write under the lock.
var addUnderLock = process.Register("syncprim.example.add",
	func(ctx context.Context, l *syncprim.Lock, counter *shm.Value[int64], n int) error {
		defer l.Close()
		defer counter.Close()
		for i := 0; i < n; i++ {
			if err := l.Acquire(ctx); err != nil {
				return err
			}
			counter.Store(counter.Load() + 1) // not atomic: the lock protects it
			if err := l.Release(); err != nil {
				return err
			}
		}
		return nil
	})

// A Lock shared by four processes protects a counter in shared memory
// (Python's "synchronization between processes" recipe).
func ExampleLock() {
	ctx := context.Background()
	l, err := syncprim.NewLock()
	if err != nil {
		panic(err)
	}
	defer l.Close()
	counter, err := shm.NewValue[int64](0)
	if err != nil {
		panic(err)
	}
	defer counter.Close()
	var ps []*process.Process
	for i := 0; i < 4; i++ {
		p := addUnderLock.Process(l, counter, 1000)
		if err := p.Start(ctx); err != nil {
			panic(err)
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		if err := p.Wait(); err != nil {
			panic(err)
		}
	}
	fmt.Println(counter.Load())
	// Output: 4000
}

// Releasing a Lock that is not held is an error, as in Python; a Lock is
// also a sync.Locker.
func ExampleLock_Release() {
	l, _ := syncprim.NewLock()
	defer l.Close()
	l.Lock()
	fmt.Println(l.Locked())
	l.Unlock()
	fmt.Println(l.Release())
	// Output:
	// true
	// syncprim: lock not held by the caller
}

// Acquire returns ErrOwnerDead, with the lock held, when the holder died
// holding it: repair the protected data, then carry on.
func ExampleLock_Acquire_ownerDead() {
	l, _ := syncprim.NewLock()
	defer l.Close()
	switch err := l.Acquire(context.Background()); {
	case errors.Is(err, syncprim.ErrOwnerDead):
		// The previous holder died mid-update: check or rebuild the data.
		fmt.Println("repairing")
	case err != nil:
		panic(err)
	}
	defer l.Release()
	fmt.Println("held")
	// Output: held
}

// An RLock may be re-acquired by the process that holds it.
func ExampleRLock() {
	r, _ := syncprim.NewRLock()
	defer r.Close()
	ctx := context.Background()
	r.Acquire(ctx)
	r.Acquire(ctx)
	fmt.Println(r.Count())
	r.Release()
	r.Release()
	fmt.Println(r.Count(), r.Release())
	// Output:
	// 2
	// 0 syncprim: lock not held by the caller
}

// A BoundedSemaphore refuses to be released above its initial value; a
// Semaphore does not. Acquire with a timeout is a context deadline.
func ExampleNewBoundedSemaphore() {
	s, _ := syncprim.NewBoundedSemaphore(2)
	defer s.Close()
	s.Acquire(context.Background())
	fmt.Println(s.Value())
	fmt.Println(s.Release(), s.Value())
	fmt.Println(s.Release())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	s.Acquire(ctx)
	s.Acquire(ctx)
	fmt.Println(s.Acquire(ctx), s.Value())
	// Output:
	// 1
	// <nil> 2
	// syncprim: released too many times
	// context deadline exceeded 0
}

// Wait with an expired context returns at once (Python's wait(0)).
func ExampleEvent() {
	e, _ := syncprim.NewEvent()
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	fmt.Println(e.Wait(ctx))
	e.Set()
	fmt.Println(e.Wait(ctx), e.IsSet())
	// Output:
	// context deadline exceeded
	// <nil> true
}

// A Condition's Notify(n) wakes exactly n waiters; WaitFor waits for a
// predicate over state changed under the lock.
//
// Goroutines of one process share an RLock's ownership (its owner is the
// process), so between goroutines, as here, the Condition is built on a
// Lock, which excludes them. Across processes NewCondition(nil), with its
// own RLock as in Python, works the same way.
func ExampleCondition() {
	ctx := context.Background()
	l, _ := syncprim.NewLock()
	defer l.Close()
	c, _ := syncprim.NewCondition(l)
	defer c.Close()
	var ready atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done) // after Unlock: the deferred calls run last-in first-out
		c.Lock()
		defer c.Unlock()
		c.WaitFor(ctx, func() bool { return ready.Load() == 3 })
		fmt.Println("ready:", ready.Load())
	}()
	for i := 0; i < 3; i++ {
		c.Lock()
		ready.Add(1)
		c.NotifyAll()
		c.Unlock()
	}
	<-done
	// Output: ready: 3
}

// A Barrier releases its parties together; the last to arrive runs the
// action, and each party gets a distinct index.
func ExampleBarrier() {
	b, _ := syncprim.NewBarrier(3, syncprim.Action(func() error {
		fmt.Println("all arrived")
		return nil
	}))
	defer b.Close()
	idx := make(chan int, 3)
	for i := 0; i < 3; i++ {
		go func() {
			i, err := b.Wait(context.Background())
			if err != nil {
				panic(err)
			}
			idx <- i
		}()
	}
	sum := <-idx + <-idx + <-idx
	fmt.Println("indices sum to", sum)
	// Output:
	// all arrived
	// indices sum to 3
}

// An OwnedSemaphore's permits belong to the process that took them: only
// it may release them, and if it dies holding them they are given back.
func ExampleOwnedSemaphore() {
	ctx := context.Background()
	s, err := syncprim.NewOwnedSemaphore(2)
	if err != nil {
		panic(err)
	}
	defer s.Close()
	if err := s.Acquire(ctx); err != nil {
		panic(err)
	}
	fmt.Println("free:", s.Value(), "held here:", s.Held())
	if err := s.Release(); err != nil {
		panic(err)
	}
	// A process may release only permits it holds.
	fmt.Println(errors.Is(s.Release(), syncprim.ErrNotHeld))
	// Output:
	// free: 1 held here: 1
	// true
}
