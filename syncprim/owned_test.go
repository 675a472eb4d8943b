// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/shm"
)

var _ = mptest.RegisterHelper("owned-hold", func() {
	// Acquires arg 0 permits, says "held", then releases them when told
	// "release" (or is killed holding them).
	s := new(OwnedSemaphore)
	attach(0, s)
	n := argInt(0)
	for i := 0; i < n; i++ {
		must(s.Acquire(bg), "acquire")
	}
	if s.Held() != n {
		die("Held() = %d, want %d", s.Held(), n)
	}
	say("held")
	if hear() == "release" {
		for i := 0; i < n; i++ {
			must(s.Release(), "release")
		}
		wantErr(s.Release(), ErrNotHeld, "release of a permit not held")
		say("released")
	}
})

var _ = mptest.RegisterHelper("owned-foreign", func() {
	// The parent holds every permit: this process may not release one.
	s := new(OwnedSemaphore)
	attach(0, s)
	wantErr(s.Release(), ErrNotHeld, "Release of the parent's permit")
	if ok, err := s.TryAcquire(); ok || err != nil {
		die("TryAcquire with every permit held by a live process: %v %v", ok, err)
	}
	say("ok")
})

var _ = mptest.RegisterHelper("owned-stress", func() {
	// n times: acquire a permit, check that at most arg 1 holders are
	// inside, release it.
	s, b := new(OwnedSemaphore), new(shm.Block)
	attach(0, s)
	attach(1, b)
	n, max := argInt(0), uint32(argInt(1))
	inside := word32(b, 0)
	say("ready")
	hear() // all start together
	for i := 0; i < n; i++ {
		must(s.Acquire(bg), "acquire")
		if v := atomic.AddUint32(inside, 1); v > max {
			die("%d holders inside, permits %d", v, max)
		}
		atomic.AddUint32(inside, ^uint32(0))
		must(s.Release(), "release")
	}
})

func newOwned(t *testing.T, n int, opts ...Option) *OwnedSemaphore {
	t.Helper()
	s, err := NewOwnedSemaphore(n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestOwnedSemaphore: permits are counted, released only by their
// holder, and hand over between processes.
func TestOwnedSemaphore(t *testing.T) {
	s := newOwned(t, 2)
	if s.Permits() != 2 || s.Value() != 2 || s.Held() != 0 {
		t.Fatalf("new: permits %d value %d held %d", s.Permits(), s.Value(), s.Held())
	}
	if err := s.Release(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Release of no permit: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := s.Acquire(bg); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := s.TryAcquire(); ok || err != nil {
		t.Fatalf("TryAcquire with none free: %v %v", ok, err)
	}
	if s.Value() != 0 || s.Held() != 2 {
		t.Fatalf("value %d held %d", s.Value(), s.Held())
	}
	ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
	defer cancel()
	if err := s.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with a deadline: %v", err)
	}
	c := start(t, "owned-foreign", nil, s)
	c.expect("ok")
	c.wait()
	// A child waits for a permit; our Release hands it over.
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("third Release: %v", err)
	}
	c = start(t, "owned-hold", []string{"2"}, s)
	c.expect("held")
	if s.Value() != 0 {
		t.Fatalf("value %d with the child holding both", s.Value())
	}
	c.tell("release")
	c.expect("released")
	c.wait()
	if s.Value() != 2 {
		t.Fatalf("value %d after the child released", s.Value())
	}
	for _, n := range []int{0, -1, MaxOwnedPermits + 1} {
		if _, err := NewOwnedSemaphore(n); err == nil {
			t.Fatalf("NewOwnedSemaphore(%d) succeeded", n)
		}
	}
}

// TestOwnedSemaphoreHolderKilled: a process SIGKILLed holding permits
// gives them back: to a waiter already asleep (promptly: the latency is
// logged, with only a generous ceiling), and to TryAcquire once the holder
// is reaped, and to a fresh Acquire while the holder is a zombie.
func TestOwnedSemaphoreHolderKilled(t *testing.T) {
	s := newOwned(t, 3)
	// 1. A waiter asleep while the holder, holding all three, is killed.
	h := start(t, "owned-hold", []string{"3"}, s)
	h.expect("held")
	got := make(chan error, 1)
	go func() { got <- s.Acquire(bg) }()
	waitSleepers(t, unsafe.Pointer(&s.m.Load().seq), 1)
	time.Sleep(50 * time.Millisecond) // into the watched phase
	t0 := time.Now()
	h.kill()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("a sleeping waiter got a dead holder's permit %.1f ms after the SIGKILL", float64(time.Since(t0))/1e6)
	case <-time.After(30 * time.Second):
		t.Fatal("the dead holder's permits were not given back to a sleeping waiter in 30 s")
	}
	h.reap()
	if s.Held() != 1 || s.Value() != 2 {
		t.Fatalf("after the take-over: held %d value %d, want 1 and 2", s.Held(), s.Value())
	}
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	// 2. No waiter: TryAcquire gives back the permits of a reaped holder.
	h = start(t, "owned-hold", []string{"3"}, s)
	h.expect("held")
	if ok, _ := s.TryAcquire(); ok {
		t.Fatal("TryAcquire took a live holder's permit")
	}
	h.kill()
	h.reap()
	for i := 0; i < 3; i++ {
		if ok, err := s.TryAcquire(); !ok || err != nil {
			t.Fatalf("TryAcquire %d after the holder died: %v %v", i, ok, err)
		}
	}
	if s.Held() != 3 {
		t.Fatalf("held %d", s.Held())
	}
	for i := 0; i < 3; i++ {
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
	}
	// 3. A fresh Acquire with the killed holder still a zombie.
	h = start(t, "owned-hold", []string{"3"}, s)
	h.expect("held")
	h.kill()
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	if err := s.Acquire(ctx); err != nil {
		t.Fatalf("Acquire after the holder died: %v", err)
	}
	h.reap()
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
}

// TestOwnedSemaphoreStress: 4 processes, 2 permits: never more than 2
// inside, and all permits free at the end.
func TestOwnedSemaphoreStress(t *testing.T) {
	s := newOwned(t, 2)
	b := newBlock(t, 64)
	n := 20000
	if testing.Short() {
		n = 2000
	}
	var ps []*proc
	for i := 0; i < 4; i++ {
		ps = append(ps, start(t, "owned-stress", []string{strconv.Itoa(n), "2"}, s, b))
	}
	for _, p := range ps {
		p.expect("ready")
	}
	for _, p := range ps {
		p.tell("go")
	}
	for _, p := range ps {
		p.waitWithin(2*time.Minute, "stress child did not finish")
	}
	if s.Value() != 2 {
		t.Fatalf("value %d at the end", s.Value())
	}
}

// TestOwnedSemaphoreInSegment: an OwnedSemaphore in a segment is reached
// with OpenOwnedSemaphore; a corrupt header is refused.
func TestOwnedSemaphoreInSegment(t *testing.T) {
	seg, err := shm.New(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	s := newOwned(t, 5, InSegment(seg, 256))
	if err := s.Acquire(bg); err != nil {
		t.Fatal(err)
	}
	o, err := OpenOwnedSemaphore(seg, 256)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Permits() != 5 || o.Value() != 4 || o.Held() != 1 {
		t.Fatalf("opened: permits %d value %d held %d", o.Permits(), o.Value(), o.Held())
	}
	if err := o.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenOwnedSemaphore(seg, 0); !errors.Is(err, ErrBadHandle) {
		t.Fatalf("open where there is none: %v", err)
	}
	if _, err := OpenSemaphore(seg, 256); !errors.Is(err, ErrBadHandle) {
		t.Fatalf("opened as a Semaphore: %v", err)
	}
	// A header claiming more permits than the segment holds.
	atomic.StoreUint32(&(*ownedSemMem)(unsafe.Pointer(&seg.Bytes()[256])).permits, 1<<12)
	if _, err := OpenOwnedSemaphore(seg, 256); !errors.Is(err, ErrBadHandle) {
		t.Fatalf("open of an oversized header: %v", err)
	}
	atomic.StoreUint32(&(*ownedSemMem)(unsafe.Pointer(&seg.Bytes()[256])).permits, 5)
}

// TestOwnedSemaphoreMax: the largest semaphore fills and empties, and a
// waiter on it gets the permit released from another process.
func TestOwnedSemaphoreMax(t *testing.T) {
	s := newOwned(t, MaxOwnedPermits)
	for i := 0; i < MaxOwnedPermits; i++ {
		if ok, err := s.TryAcquire(); !ok || err != nil {
			t.Fatalf("TryAcquire %d: %v %v", i, ok, err)
		}
	}
	if ok, _ := s.TryAcquire(); ok {
		t.Fatal("TryAcquire beyond the permits")
	}
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	c := start(t, "owned-hold", []string{"1"}, s)
	c.expect("held")
	got := make(chan error, 1)
	go func() { got <- s.Acquire(bg) }()
	waitSleepers(t, unsafe.Pointer(&s.m.Load().seq), 1)
	c.tell("release")
	c.expect("released")
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiter did not get the permit released by the child")
	}
	c.wait()
	if s.Held() != MaxOwnedPermits || s.Value() != 0 {
		t.Fatalf("held %d value %d", s.Held(), s.Value())
	}
	for i := 0; i < MaxOwnedPermits; i++ {
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
	}
}
