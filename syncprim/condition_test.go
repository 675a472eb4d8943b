// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/shm"
)

var _ = mptest.RegisterHelper("cond-wait", func() {
	// Waits on the condition once: tells the parent it is about to wait
	// (releasing "ready" while holding the lock, so that the parent's
	// next acquisition of the lock finds it waiting), then reports its
	// wake-up by releasing "woken".
	c, ready, woken := new(Condition), new(Semaphore), new(Semaphore)
	attach(0, c)
	attach(1, ready)
	attach(2, woken)
	must(c.Acquire(bg), "acquire")
	must(ready.Release(), "ready")
	must(c.Wait(bg), "wait")
	must(woken.Release(), "woken")
	must(c.Release(), "release")
})

var _ = mptest.RegisterHelper("cond-waitfor", func() {
	// Waits until the shared value reaches arg 0.
	c, b := new(Condition), new(shm.Block)
	attach(0, c)
	attach(1, b)
	want := uint64(argInt(0))
	must(c.Acquire(bg), "acquire")
	must(c.WaitFor(bg, func() bool { return atomic.LoadUint64(word64(b, 0)) >= want }), "wait_for")
	say("done")
	must(c.Release(), "release")
})

func newCondSet(t *testing.T, lock Mutex) (*Condition, *Semaphore, *Semaphore) {
	t.Helper()
	c, err := NewCondition(lock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ready, err := NewSemaphore(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ready.Close() })
	woken, err := NewSemaphore(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { woken.Close() })
	return c, ready, woken
}

// TestConditionNotify ports test_notify and test_notify_n: Notify(n) wakes
// exactly n of the waiting processes, NotifyAll the rest; an extra
// notification is a no-op.
func TestConditionNotify(t *testing.T) {
	for _, name := range []string{"rlock", "lock"} {
		t.Run(name, func(t *testing.T) {
			var lock Mutex
			if name == "lock" {
				l, err := NewLock()
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				lock = l
			}
			c, ready, woken := newCondSet(t, lock)
			const n = 5
			var cs []*proc
			for i := 0; i < n; i++ {
				cs = append(cs, start(t, "cond-wait", nil, c, ready, woken))
			}
			for i := 0; i < n; i++ {
				if err := ready.Acquire(bg); err != nil {
					t.Fatal(err)
				}
			}
			// Holding the lock, every child is inside Wait.
			c.Lock()
			if got := c.Waiting(); got != n {
				t.Fatalf("Waiting() = %d, want %d", got, n)
			}
			if err := c.Notify(1); err != nil {
				t.Fatal(err)
			}
			if got := c.Waiting(); got != n-1 {
				t.Fatalf("after Notify(1): Waiting() = %d, want %d", got, n-1)
			}
			if err := c.Notify(2); err != nil {
				t.Fatal(err)
			}
			if got := c.Waiting(); got != n-3 {
				t.Fatalf("after Notify(2): Waiting() = %d, want %d", got, n-3)
			}
			c.Unlock()
			for i := 0; i < 3; i++ {
				if err := woken.Acquire(bg); err != nil {
					t.Fatal(err)
				}
			}
			c.Lock()
			if err := c.NotifyAll(); err != nil {
				t.Fatal(err)
			}
			if err := c.Notify(1); err != nil { // nobody left: a no-op
				t.Fatal(err)
			}
			c.Unlock()
			for _, p := range cs {
				p.wait()
			}
			if got := woken.Value(); got != n-3 {
				t.Fatalf("woken = %d, want %d", got, n-3)
			}
		})
	}
}

// TestConditionErrors: Wait and Notify without the lock; Wait's timeout
// (test_timeout) returns with the lock held and no waiter left behind.
func TestConditionErrors(t *testing.T) {
	c, err := NewCondition(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Wait(bg); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Wait without the lock: %v", err)
	}
	if err := c.Notify(1); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Notify without the lock: %v", err)
	}
	c.Lock()
	c.Lock() // the default lock is an RLock
	ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
	defer cancel()
	if err := c.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a timeout: %v", err)
	}
	if rl := c.Locker().(*RLock); rl.Count() != 2 {
		t.Fatalf("recursion level after Wait: %d, want 2", rl.Count())
	}
	if c.Waiting() != 0 {
		t.Fatalf("Waiting() = %d after a timed-out wait", c.Waiting())
	}
	c.Unlock()
	c.Unlock()
	cctx, ccancel := context.WithCancel(bg)
	errc := make(chan error)
	go func() {
		c.Lock()
		defer c.Unlock()
		errc <- c.Wait(cctx)
	}()
	ccancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait: %v", err)
	}
	if c.Waiting() != 0 {
		t.Fatalf("Waiting() = %d after a cancelled wait", c.Waiting())
	}
	// WaitFor with a predicate that never holds: the timeout.
	c.Lock()
	ctx2, cancel2 := context.WithTimeout(bg, 20*time.Millisecond)
	defer cancel2()
	if err := c.WaitFor(ctx2, func() bool { return false }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor timeout: %v", err)
	}
	c.Unlock()
}

// TestConditionWaitFor ports test_waitfor: a child waits for a shared
// value to reach 4 while the parent raises it under the lock.
func TestConditionWaitFor(t *testing.T) {
	c, err := NewCondition(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := newBlock(t, 64)
	p := start(t, "cond-waitfor", []string{"4"}, c, b)
	for i := 0; i < 4; i++ {
		c.Lock()
		atomic.AddUint64(word64(b, 0), 1)
		if err := c.NotifyAll(); err != nil {
			t.Fatal(err)
		}
		c.Unlock()
	}
	p.expect("done")
	p.wait()
}

// TestConditionDeadWaiter: a waiter killed while waiting does not take a
// notification.
func TestConditionDeadWaiter(t *testing.T) {
	ctx, cancel := context.WithTimeout(bg, time.Minute)
	defer cancel()
	c, ready, woken := newCondSet(t, nil)
	dead := start(t, "cond-wait", nil, c, ready, woken)
	if err := ready.Acquire(ctx); err != nil {
		t.Fatalf("the first waiter never got ready: %v", err)
	}
	c.Lock() // once the lock is ours, dead is inside Wait
	if got := c.Waiting(); got != 1 {
		t.Fatalf("Waiting() = %d, want 1", got)
	}
	c.Unlock()
	dead.kill()
	dead.reap()
	live := start(t, "cond-wait", nil, c, ready, woken)
	if err := ready.Acquire(ctx); err != nil {
		t.Fatalf("the second waiter never got ready: %v", err)
	}
	if err := c.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Notify(1); err != nil {
		t.Fatal(err)
	}
	c.Unlock()
	if err := woken.Acquire(ctx); err != nil {
		t.Fatalf("the live waiter was not woken (%v): the dead waiter took the notification", err)
	}
	live.waitWithin(time.Minute, "the live waiter did not finish after its wake-up")
}

// TestConditionMaxWaiters: with every slot taken by a live waiter Wait
// returns ErrTooManyWaiters; the slot of a waiter that died is reclaimed.
func TestConditionMaxWaiters(t *testing.T) {
	c, err := NewCondition(nil, MaxWaiters(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ready, err := NewSemaphore(0)
	if err != nil {
		t.Fatal(err)
	}
	defer ready.Close()
	woken, err := NewSemaphore(0)
	if err != nil {
		t.Fatal(err)
	}
	defer woken.Close()
	p := start(t, "cond-wait", nil, c, ready, woken)
	if err := ready.Acquire(bg); err != nil {
		t.Fatal(err)
	}
	// Wait checks its context before it looks for a slot: a context
	// that may have ended (a short timeout on a loaded machine) would
	// make it return ctx.Err() without looking. This one ends only if
	// Wait wrongly waits.
	ctx, cancel := context.WithTimeout(bg, time.Minute)
	defer cancel()
	c.Lock()
	if err := c.Wait(ctx); !errors.Is(err, ErrTooManyWaiters) {
		t.Fatalf("Wait with every slot taken: %v", err)
	}
	c.Unlock()
	p.kill()
	p.reap()
	// The dead waiter's slot is reclaimed: Wait sleeps in it (seen
	// from /proc, not assumed after a timeout) until its context is
	// cancelled.
	wctx, wcancel := context.WithCancel(bg)
	defer wcancel()
	waited := make(chan struct{})
	go func() {
		defer wcancel()
		for futexSleepers(unsafe.Pointer(&c.slots[0].state)) == 0 {
			select {
			case <-waited:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	c.Lock()
	err = c.Wait(wctx)
	close(waited)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after the waiter died: %v, want it to sleep in the reclaimed slot until cancelled", err)
	}
	c.Unlock()
}
