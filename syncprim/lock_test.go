// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/shm"
)

var _ = mptest.RegisterHelper("lock-hold", func() {
	// Acquires the handed lock (arg 0: "lock" or "rlock"), says "held",
	// and releases it when told to.
	var l Mutex
	if mptest.HelperArgs()[0] == "rlock" {
		l = new(RLock)
	} else {
		l = new(Lock)
	}
	attach(0, l.(attacher))
	must(l.Acquire(bg), "acquire")
	say("held")
	if hear() == "release" {
		must(l.Release(), "release")
		say("released")
	}
})

var _ = mptest.RegisterHelper("lock-foreign", func() {
	// The parent holds the lock: this process may neither take nor
	// release it.
	var l Mutex
	var try func() (bool, error)
	var owner func() int
	if mptest.HelperArgs()[0] == "rlock" {
		r := new(RLock)
		attach(0, r)
		l, try, owner = r, r.TryAcquire, r.Owner
	} else {
		r := new(Lock)
		attach(0, r)
		l, try, owner = r, r.TryAcquire, r.Owner
	}
	if ok, err := try(); ok || err != nil {
		die("TryAcquire of the parent's lock: %v %v", ok, err)
	}
	wantErr(l.Release(), ErrNotHeld, "Release of the parent's lock")
	if owner() != os.Getppid() {
		die("Owner() = %d, want %d", owner(), os.Getppid())
	}
	ctx, cancel := context.WithTimeout(bg, 5*time.Millisecond)
	defer cancel()
	wantErr(l.Acquire(ctx), context.DeadlineExceeded, "Acquire with a deadline")
	say("ok")
	// Now wait for the parent to release, then take it.
	hear()
	must(l.Acquire(bg), "acquire after the parent released")
	must(l.Release(), "release")
})

var _ = mptest.RegisterHelper("lock-counter", func() {
	// Increments a shared counter n times under the lock.
	l, b := new(Lock), new(shm.Block)
	attach(0, l)
	attach(1, b)
	defer b.Close()
	defer l.Close()
	n := argInt(0)
	p := word64(b, 0)
	for i := 0; i < n; i++ {
		l.Lock()
		*p++
		l.Unlock()
	}
})

// TestLock ports _TestLock.test_lock across processes.
func TestLock(t *testing.T) {
	l, err := NewLock()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	mptest.CheckFDs(t) // after the default arena exists
	mptest.CheckChildren(t)
	if ok, err := l.TryAcquire(); !ok || err != nil {
		t.Fatalf("TryAcquire of a free lock: %v %v", ok, err)
	}
	if ok, err := l.TryAcquire(); ok || err != nil {
		t.Fatalf("TryAcquire of a held lock: %v %v", ok, err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("double Release: %v, want ErrNotHeld", err)
	}
	var _ sync.Locker = l
	l.Lock()
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Unlock of a held lock panicked: %v", r)
			}
		}()
		l.Unlock()
	}()
	func() {
		defer func() {
			if r := recover(); r != ErrNotHeld {
				t.Fatalf("Unlock of a free lock: recovered %v, want ErrNotHeld", r)
			}
		}()
		l.Unlock()
	}()

	// Another process sees it held and cannot release it.
	if err := l.Acquire(bg); err != nil {
		t.Fatal(err)
	}
	c := start(t, "lock-foreign", []string{"lock"}, l)
	c.expect("ok")
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	c.tell("go")
	c.wait()
	if l.Locked() {
		t.Fatal("lock still held after the child released it")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(bg); !errors.Is(err, ErrClosed) {
		t.Fatalf("Acquire after Close: %v", err)
	}
}

// TestRLock ports _TestLock.test_rlock across processes.
func TestRLock(t *testing.T) {
	l, err := NewRLock()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 1; i <= 3; i++ {
		if err := l.Acquire(bg); err != nil {
			t.Fatal(err)
		}
		if got := l.Count(); got != i {
			t.Fatalf("Count() = %d, want %d", got, i)
		}
	}
	c := start(t, "lock-foreign", []string{"rlock"}, l)
	c.expect("ok")
	for i := 0; i < 3; i++ {
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Release(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("over-release: %v, want ErrNotHeld", err)
	}
	c.tell("go")
	c.wait()
	if ok, err := l.TryAcquire(); !ok || err != nil {
		t.Fatalf("TryAcquire: %v %v", ok, err)
	}
	if ok, err := l.TryAcquire(); !ok || err != nil {
		t.Fatalf("re-entrant TryAcquire: %v %v", ok, err)
	}
	if l.Count() != 2 {
		t.Fatalf("Count() = %d", l.Count())
	}
}

// TestLockContextCancel: a cancelled or timed-out Acquire returns the
// context's error and leaves the lock with its holder.
func TestLockContextCancel(t *testing.T) {
	for _, kind := range []string{"lock", "rlock"} {
		t.Run(kind, func(t *testing.T) {
			var l interface {
				Mutex
				attacher
				handler
				Owner() int
			}
			if kind == "rlock" {
				r, err := NewRLock()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				l = r
			} else {
				r, err := NewLock()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				l = r
			}
			c := start(t, "lock-hold", []string{kind}, l)
			c.expect("held")
			ctx, cancel := context.WithCancel(bg)
			errc := make(chan error)
			go func() { errc <- l.Acquire(ctx) }()
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled Acquire: %v", err)
			}
			ctx, cancel = context.WithTimeout(bg, 20*time.Millisecond)
			defer cancel()
			if err := l.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("timed-out Acquire: %v", err)
			}
			if got := l.Owner(); got != c.cmd.Process.Pid {
				t.Fatalf("Owner() = %d, want the child %d", got, c.cmd.Process.Pid)
			}
			// A waiter that stays is woken by the child's release.
			go func() { errc <- l.Acquire(bg) }()
			c.tell("release")
			c.expect("released")
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if err := l.Release(); err != nil {
				t.Fatal(err)
			}
			c.wait()
		})
	}
}

// TestLockOwnerDead: a holder SIGKILLed while holding the lock; a waiter
// already asleep and a later acquirer both learn ErrOwnerDead.
func TestLockOwnerDead(t *testing.T) {
	for _, kind := range []string{"lock", "rlock"} {
		t.Run(kind, func(t *testing.T) {
			var l interface {
				Mutex
				handler
				TryAcquire() (bool, error)
			}
			if kind == "rlock" {
				r, err := NewRLock()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				l = r
			} else {
				r, err := NewLock()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				l = r
			}
			// 1. A waiter blocked before the holder dies.
			c := start(t, "lock-hold", []string{kind}, l)
			c.expect("held")
			errc := make(chan error)
			go func() { errc <- l.Acquire(bg) }()
			c.kill() // not reaped yet: a zombie is dead too
			if err := <-errc; !errors.Is(err, ErrOwnerDead) {
				t.Fatalf("blocked Acquire after the holder died: %v, want ErrOwnerDead", err)
			}
			c.reap()
			if err := l.Release(); err != nil {
				t.Fatalf("Release after ErrOwnerDead: %v", err)
			}
			// 2. An acquirer arriving after the death, and TryAcquire.
			for _, try := range []bool{false, true} {
				c = start(t, "lock-hold", []string{kind}, l)
				c.expect("held")
				c.kill()
				c.reap()
				if try {
					if ok, err := l.TryAcquire(); !ok || !errors.Is(err, ErrOwnerDead) {
						t.Fatalf("TryAcquire after the holder died: %v %v", ok, err)
					}
				} else if err := l.Acquire(bg); !errors.Is(err, ErrOwnerDead) {
					t.Fatalf("Acquire after the holder died: %v, want ErrOwnerDead", err)
				}
				if err := l.Release(); err != nil {
					t.Fatal(err)
				}
				if err := l.Acquire(bg); err != nil {
					t.Fatalf("Acquire of the repaired lock: %v", err)
				}
				if err := l.Release(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// stressN is the total number of increments of the counter stress test
// (MULTIPROC_STRESS_N overrides).
func stressN() int {
	if s := os.Getenv("MULTIPROC_STRESS_N"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 1_000_000
}

// TestLockStress: 2 and 4 processes increment a shared counter under the
// lock; the total is exact (stressN increments over both runs, or
// MULTIPROC_STRESS_N per run when set).
func TestLockStress(t *testing.T) {
	total := stressN()
	if os.Getenv("MULTIPROC_STRESS_N") == "" {
		total /= 2 // half for each process count
	}
	for _, procs := range []int{2, 4} {
		t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
			l, err := NewLock()
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			b := newBlock(t, 64)
			per := total / procs
			var cs []*proc
			for i := 0; i < procs; i++ {
				cs = append(cs, start(t, "lock-counter", []string{strconv.Itoa(per)}, l, b))
			}
			for _, c := range cs {
				c.wait()
			}
			if got, want := *word64(b, 0), uint64(per*procs); got != want {
				t.Fatalf("counter = %d, want %d", got, want)
			}
			if l.Locked() {
				t.Fatal("lock held at the end")
			}
		})
	}
}

// TestLockGoroutines: goroutines of one process exclude each other too
// (run under -race: the counter is a plain variable).
func TestLockGoroutines(t *testing.T) {
	l, err := NewLock()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	counter := 0
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10000; i++ {
				l.Lock()
				counter++
				l.Unlock()
			}
		}()
	}
	wg.Wait()
	if counter != 40000 {
		t.Fatalf("counter = %d", counter)
	}
}
