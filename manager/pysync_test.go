// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/multiproc/multiproc/manager"
)

func deadlineIn(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

func TestPyClientLocks(t *testing.T) {
	ctx := testCtx(t)
	c := startPyManager(t, "", "unix").connect(t)

	l, err := manager.NewPyLock(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Free(ctx)
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryAcquire(ctx); ok || err != nil {
		t.Errorf("TryAcquire of a held Lock: %v %v", ok, err)
	}
	short, cancel := deadlineIn(ctx, 300*time.Millisecond)
	err = l.Acquire(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire of a held Lock with a deadline: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); !errors.Is(err, manager.ErrNotHeld) {
		t.Errorf("Release of a free Lock: %v", err)
	}

	r, err := manager.NewPyRLock(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Free(ctx)
	for range 2 {
		if err := r.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := r.Release(ctx); err != nil {
			t.Fatalf("RLock release on its own connection: %v", err)
		}
	}
	if err := r.Release(ctx); !errors.Is(err, manager.ErrNotHeld) {
		t.Errorf("third Release of an RLock: %v", err)
	}
	// Close closes the RLock's own connection too (the fd leak check of
	// TestMain would see it otherwise); calls then fail with ErrClosed.
	r2, err := manager.NewPyRLock(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Acquire(ctx); err != nil {
		t.Fatal(err)
	}

	s, err := manager.NewPySemaphore(ctx, c, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Free(ctx)
	for i, want := range []bool{true, true, false} {
		if ok, err := s.TryAcquire(ctx); ok != want || err != nil {
			t.Errorf("TryAcquire %d: %v %v", i, ok, err)
		}
	}
	b, err := manager.NewPyBoundedSemaphore(ctx, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(ctx)
	if err := b.Release(ctx); !errors.Is(err, manager.ErrOverRelease) {
		t.Errorf("Release of a BoundedSemaphore at its value: %v", err)
	}
	c.Close()
	if err := r2.Release(ctx); !errors.Is(err, manager.ErrClosed) {
		t.Errorf("RLock Release after Close: %v", err)
	}
}

func TestPyClientEventValueNamespace(t *testing.T) {
	ctx := testCtx(t)
	c := startPyManager(t, "", "tcp").connect(t)

	e, err := manager.NewPyEvent(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Free(ctx)
	short, cancel := deadlineIn(ctx, 300*time.Millisecond)
	err = e.Wait(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait on a clear Event: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Wait(ctx) }()
	if err := e.Set(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Wait: %v", err)
	}
	if set, err := e.IsSet(ctx); !set || err != nil {
		t.Errorf("IsSet: %v %v", set, err)
	}
	if err := e.Clear(ctx); err != nil {
		t.Error(err)
	}

	v, err := manager.NewPyValue(ctx, c, "d", 1.5)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release(ctx)
	if x, err := v.Get(ctx); x != 1.5 || err != nil {
		t.Errorf("Value Get: %v %v", x, err)
	}
	if err := v.Set(ctx, 2.5); err != nil {
		t.Fatal(err)
	}
	if x, err := v.Get(ctx); x != 2.5 || err != nil {
		t.Errorf("Value Get after Set: %v %v", x, err)
	}

	n, err := manager.NewPyNamespace(ctx, c, map[string]any{"x": 1})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Release(ctx)
	var x int
	if err := n.GetInto(ctx, "x", &x); x != 1 || err != nil {
		t.Errorf("Namespace x: %v %v", x, err)
	}
	if _, err := n.Get(ctx, "missing"); !errors.Is(err, manager.ErrKeyNotFound) {
		t.Errorf("missing attribute: %v", err)
	}
	if err := n.Set(ctx, "y", "why"); err != nil {
		t.Fatal(err)
	}
	if y, err := n.Get(ctx, "y"); y != "why" || err != nil {
		t.Errorf("Namespace y: %v %v", y, err)
	}
	if err := n.Delete(ctx, "y"); err != nil {
		t.Error(err)
	}
	if err := n.Delete(ctx, "y"); !errors.Is(err, manager.ErrKeyNotFound) {
		t.Errorf("second Delete: %v", err)
	}
}

func TestPyClientJoinableQueue(t *testing.T) {
	ctx := testCtx(t)
	c := startPyManager(t, "", "unix").connect(t)
	q, err := manager.NewPyJoinableQueue[int](ctx, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Release(ctx)
	for i := range 3 {
		if err := q.Put(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		for range 3 {
			if _, err := q.Get(ctx); err != nil {
				done <- err
				return
			}
			if err := q.TaskDone(ctx); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	if err := q.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := q.TaskDone(ctx); !errors.Is(err, manager.ErrOverRelease) {
		t.Errorf("extra TaskDone: %v", err)
	}
}
