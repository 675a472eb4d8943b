// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/multiproc/multiproc/internal/mptest"
)

var _ = mptest.RegisterHelper("sem-pong", func() {
	// n times: acquire s1, release s2.
	s1, s2 := new(Semaphore), new(Semaphore)
	attach(0, s1)
	attach(1, s2)
	n := argInt(0)
	for i := 0; i < n; i++ {
		must(s1.Acquire(bg), "acquire")
		must(s2.Release(), "release")
	}
})

var _ = mptest.RegisterHelper("sem-ops", func() {
	// Releases the handed semaphore twice and checks the bound.
	s := new(Semaphore)
	attach(0, s)
	must(s.Release(), "release")
	if s.Bounded() {
		wantErr(s.Release(), ErrOverRelease, "release past the bound")
	} else {
		must(s.Release(), "release")
	}
	say(strconv.Itoa(s.Value()))
})

// TestSemaphore ports _TestSemaphore: the value through acquire and
// release, unbounded release, the bounded over-release error, try and
// timeout, across processes.
func TestSemaphore(t *testing.T) {
	s, err := NewSemaphore(2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check := func(want int) {
		t.Helper()
		if got := s.Value(); got != want {
			t.Fatalf("Value() = %d, want %d", got, want)
		}
	}
	check(2)
	if err := s.Acquire(bg); err != nil {
		t.Fatal(err)
	}
	check(1)
	if ok, _ := s.TryAcquire(); !ok {
		t.Fatal("TryAcquire failed with value 1")
	}
	check(0)
	if ok, _ := s.TryAcquire(); ok {
		t.Fatal("TryAcquire succeeded with value 0")
	}
	// acquire(True, timeout) returns False after the timeout.
	ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
	defer cancel()
	if err := s.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with a timeout: %v", err)
	}
	check(0)
	// Another process releases past the initial value: 0 -> 2, then 4.
	c := start(t, "sem-ops", nil, s)
	c.expect("2")
	c.wait()
	for _, r := range []int{3, 4} {
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
		check(r)
	}

	b, err := NewBoundedSemaphore(1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Release(); !errors.Is(err, ErrOverRelease) {
		t.Fatalf("bounded over-release: %v", err)
	}
	if err := b.Acquire(bg); err != nil {
		t.Fatal(err)
	}
	c = start(t, "sem-ops", nil, b)
	c.expect("1")
	c.wait()
	if _, err := NewSemaphore(-1); err == nil {
		t.Fatal("NewSemaphore(-1) succeeded")
	}
}

// TestSemaphoreCancel: a wait cancelled while it sleeps in the kernel
// returns promptly, leaves the value unchanged and does not swallow a
// release meant for another waiter.
func TestSemaphoreCancel(t *testing.T) {
	s, err := NewSemaphore(0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(bg)
	errc := make(chan error, 2)
	result := func(what string) error {
		t.Helper()
		select {
		case err := <-errc:
			return err
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no result 30 s later", what)
			return nil
		}
	}
	go func() { errc <- s.Acquire(ctx) }()
	go func() { errc <- s.Acquire(bg) }()
	// Cancel only once both waiters sleep in FUTEX_WAIT.
	waitSleepers(t, unsafe.Pointer(&s.m.Load().seq), 2)
	cancel()
	if err := result("cancelled waiter"); !errors.Is(err, context.Canceled) {
		t.Fatalf("first result: %v, want Canceled", err)
	}
	if s.Value() != 0 {
		t.Fatalf("Value() = %d after a cancelled wait", s.Value())
	}
	// The other waiter went back to sleep.
	waitSleepers(t, unsafe.Pointer(&s.m.Load().seq), 1)
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	if err := result("remaining waiter"); err != nil {
		t.Fatalf("remaining waiter: %v", err)
	}
	if s.Value() != 0 {
		t.Fatalf("Value() = %d", s.Value())
	}
}

// TestSemaphorePingPong passes a token back and forth with a child.
func TestSemaphorePingPong(t *testing.T) {
	s1, err := NewSemaphore(0)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := NewSemaphore(0)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	const n = 2000
	c := start(t, "sem-pong", []string{strconv.Itoa(n)}, s1, s2)
	for i := 0; i < n; i++ {
		if err := s1.Release(); err != nil {
			t.Fatal(err)
		}
		if err := s2.Acquire(bg); err != nil {
			t.Fatal(err)
		}
	}
	c.wait()
	if s1.Value() != 0 || s2.Value() != 0 {
		t.Fatalf("values %d %d", s1.Value(), s2.Value())
	}
}
