// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/manager"
	"github.com/multiproc/multiproc/process"
)

// childPermits takes every permit of s and a token of plain, says so on
// ready, and waits to be killed.
var childPermits = process.Register("mgr.owned.hold", func(ctx context.Context, s *manager.OwnedSemaphore, plain *manager.Semaphore, n int, ready *ipc.Conn) error {
	for range n {
		if err := s.Acquire(ctx); err != nil {
			return err
		}
	}
	if err := plain.Acquire(ctx); err != nil {
		return err
	}
	if err := ready.SendBytes(ctx, []byte("ready")); err != nil {
		return err
	}
	<-ctx.Done() // until killed
	return nil
})

// TestOwnedSemaphore: permits belong to the connection that took them;
// only it may release them, and closing it gives them back.
func TestOwnedSemaphore(t *testing.T) {
	ts := startServer(t, "unix")
	ctx, c1 := ctxT(t), ts.client
	s1, err := manager.NewOwnedSemaphore(ctx, c1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := manager.NewOwnedSemaphore(ctx, c1, 0); !errors.Is(err, manager.ErrBadArgs) {
		t.Fatalf("zero permits: %v", err)
	}
	for range 2 {
		if err := s1.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The same object through another connection: an attached proxy
	// connects on its first call.
	s2 := new(manager.OwnedSemaphore)
	files, desc, err := s1.MultiprocHandle()
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.MultiprocAttach(files, desc); err != nil {
		t.Fatal(err)
	}
	if ok, err := s2.TryAcquire(ctx); ok || err != nil {
		t.Fatalf("TryAcquire with every permit held: %v %v", ok, err)
	}
	if err := s2.Release(ctx); !errors.Is(err, manager.ErrNotHeld) {
		t.Fatalf("Release by a connection holding none: %v, want ErrNotHeld", err)
	}
	if n, _ := s1.Held(ctx); n != 2 {
		t.Fatalf("Held() = %d, want 2", n)
	}
	if err := s1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s2.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := s1.Value(ctx); v != 0 {
		t.Fatalf("Value() = %d, want 0", v)
	}
	// A waiter of the first connection; closing the second (releasing
	// its last proxy closes it) gives its permit back, to the waiter.
	got := make(chan error, 1)
	go func() { got <- s1.Acquire(ctx) }()
	time.Sleep(20 * time.Millisecond) // let it queue (it works either way)
	if err := s2.Free(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiter after the other connection closed: %v", err)
	}
	if n, _ := s1.Held(ctx); n != 2 {
		t.Fatalf("Held() = %d after the take-over, want 2", n)
	}
	for range 2 {
		if err := s1.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s1.Release(ctx); !errors.Is(err, manager.ErrNotHeld) {
		t.Fatalf("Release past the permits held: %v", err)
	}
	if v, _ := s1.Value(ctx); v != 2 {
		t.Fatalf("Value() = %d at the end, want 2", v)
	}
}

// TestOwnedSemaphoreHolderKilled: a client process SIGKILLed holding
// every permit gives them back to a client already waiting; the token it
// took from a plain Semaphore stays lost (as in CPython).
func TestOwnedSemaphoreHolderKilled(t *testing.T) {
	ts := startServer(t, "unix")
	ctx, c := ctxT(t), ts.client
	s, err := manager.NewOwnedSemaphore(ctx, c, 2)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := manager.NewSemaphore(ctx, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	p := &process.Process{Func: childPermits, Args: []any{s, plain, 2, theirs}}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	if _, err := mine.RecvBytes(ctx); err != nil {
		t.Fatalf("child not ready: %v (%v)", err, p.Wait())
	}
	if v, _ := s.Value(ctx); v != 0 {
		t.Fatalf("Value() = %d with the child holding both permits", v)
	}
	got := make(chan error, 2)
	for range 2 {
		go func() { got <- s.Acquire(ctx) }()
	}
	time.Sleep(20 * time.Millisecond) // let them queue (it works either way)
	t0 := time.Now()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-got; err != nil {
			t.Fatalf("waiter after the holder was killed: %v", err)
		}
	}
	t.Logf("both permits back %.1f ms after the SIGKILL", float64(time.Since(t0))/1e6)
	p.Wait()
	if n, _ := s.Held(ctx); n != 2 {
		t.Fatalf("Held() = %d, want 2", n)
	}
	if v, _ := plain.Value(ctx); v != 0 {
		t.Fatalf("plain Semaphore value %d after its holder died, want 0 (lost)", v)
	}
}
