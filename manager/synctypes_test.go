// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/manager"
	"github.com/multiproc/multiproc/process"
)

// Port of CPython's TestSyncManagerTypes: every SyncManager type is used
// from a child process (a real, re-executed process that receives the
// proxy as an argument and connects to the server on its first call).

func startManager(t testing.TB) *manager.Manager {
	t.Helper()
	m, err := manager.Start(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("manager Close: %v", err)
		}
	})
	return m
}

// runChild runs fn in a child process with args and fails the test if it
// does not exit cleanly.
func runChild(t testing.TB, fn *process.Func, args ...any) {
	t.Helper()
	p := &process.Process{Func: fn, Args: args}
	if err := p.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("child %s: %v", p, err)
	}
}

var (
	childEvent = process.Register("mgr.event", func(ctx context.Context, e *manager.Event) error {
		return e.Set(ctx)
	})
	childLock = process.Register("mgr.lock", func(ctx context.Context, l *manager.Lock) error {
		if err := l.Acquire(ctx); err != nil {
			return err
		}
		return l.Release(ctx)
	})
	childRLock = process.Register("mgr.rlock", func(ctx context.Context, l *manager.RLock) error {
		for range 3 {
			if err := l.Acquire(ctx); err != nil {
				return err
			}
		}
		for range 3 {
			if err := l.Release(ctx); err != nil {
				return err
			}
		}
		if err := l.Release(ctx); !errors.Is(err, manager.ErrNotHeld) {
			return fmt.Errorf("4th release: %v, want ErrNotHeld", err)
		}
		return nil
	})
	childSem = process.Register("mgr.sem", func(ctx context.Context, s *manager.Semaphore) error {
		if err := s.Acquire(ctx); err != nil {
			return err
		}
		return s.Release(ctx)
	})
	childCond = process.Register("mgr.cond", func(ctx context.Context, c *manager.Condition) error {
		if err := c.Acquire(ctx); err != nil {
			return err
		}
		if err := c.Notify(ctx); err != nil {
			return err
		}
		return c.Release(ctx)
	})
	childBarrier = process.Register("mgr.barrier", func(ctx context.Context, b *manager.Barrier) error {
		_, err := b.Wait(ctx)
		return err
	})
	childQueue = process.Register("mgr.queue", func(ctx context.Context, q *manager.JoinableQueue[int]) error {
		for i := range 5 {
			if err := q.Put(ctx, i); err != nil {
				return err
			}
		}
		return nil
	})
	childList = process.Register("mgr.list", func(ctx context.Context, l *manager.List[int]) error {
		if err := l.Append(ctx, 5); err != nil {
			return err
		}
		return l.Extend(ctx, 6, 7)
	})
	childDict = process.Register("mgr.dict", func(ctx context.Context, d *manager.Dict[string, int]) error {
		got, err := d.Copy(ctx)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(map[string]int{"a": 0, "b": 1}, got); diff != "" {
			return fmt.Errorf("dict in child (-want +got):\n%s", diff)
		}
		return d.Set(ctx, "c", 2)
	})
	childValue = process.Register("mgr.value", func(ctx context.Context, v *manager.Value[int], a *manager.Array[int]) error {
		if err := v.Set(ctx, 2); err != nil {
			return err
		}
		for i := range 3 {
			x, err := a.Get(ctx, i)
			if err != nil {
				return err
			}
			if err := a.Set(ctx, i, x*10); err != nil {
				return err
			}
		}
		return nil
	})
	// childNested gets a nested proxy through an attached one, releases
	// it, and keeps using the outer proxy on the same shared connection.
	childNested = process.Register("mgr.nested", func(ctx context.Context, d *manager.Dict[string, *manager.List[int]]) error {
		for range 3 {
			inner, err := d.Get(ctx, "inner")
			if err != nil {
				return err
			}
			if err := inner.Append(ctx, 1); err != nil {
				return err
			}
			if err := inner.Release(ctx); err != nil {
				return err
			}
		}
		return d.Set(ctx, "inner2", nil)
	})
	childNamespace = process.Register("mgr.namespace", func(ctx context.Context, n *manager.Namespace) error {
		x, err := manager.NamespaceGet[int](ctx, n, "x")
		if err != nil || x != 1 {
			return fmt.Errorf("x = %v, %v", x, err)
		}
		return n.Set(ctx, "y", "child")
	})
)

func TestSyncManagerTypes(t *testing.T) {
	mptest.CheckChildren(t)
	m := startManager(t)
	ctx := ctxT(t)
	c := m.Client

	t.Run("Event", func(t *testing.T) {
		e, err := manager.NewEvent(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if set, _ := e.IsSet(ctx); set {
			t.Fatal("new event is set")
		}
		runChild(t, childEvent, e)
		if err := e.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if set, _ := e.IsSet(ctx); !set {
			t.Fatal("event not set by the child")
		}
	})
	t.Run("Lock", func(t *testing.T) {
		l, err := manager.NewLock(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		runChild(t, childLock, l)
		if err := l.Release(ctx); !errors.Is(err, manager.ErrNotHeld) {
			t.Fatalf("release of an unheld lock: %v, want ErrNotHeld", err)
		}
	})
	t.Run("RLock", func(t *testing.T) {
		l, err := manager.NewRLock(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		runChild(t, childRLock, l)
	})
	t.Run("Semaphore", func(t *testing.T) {
		s, err := manager.NewSemaphore(ctx, c, 1)
		if err != nil {
			t.Fatal(err)
		}
		runChild(t, childSem, s)
		if err := s.Release(ctx); err != nil {
			t.Fatalf("unbounded over-release: %v", err)
		}
		if v, _ := s.Value(ctx); v != 2 {
			t.Fatalf("value %d, want 2", v)
		}
	})
	t.Run("BoundedSemaphore", func(t *testing.T) {
		s, err := manager.NewBoundedSemaphore(ctx, c, 1)
		if err != nil {
			t.Fatal(err)
		}
		runChild(t, childSem, s)
		if err := s.Release(ctx); !errors.Is(err, manager.ErrOverRelease) {
			t.Fatalf("bounded over-release: %v", err)
		}
	})
	t.Run("Condition", func(t *testing.T) {
		cond, err := manager.NewCondition(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := cond.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		p := &process.Process{Func: childCond, Args: []any{cond}}
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		// Wait releases the lock, so the child can take it and notify.
		if err := cond.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if err := cond.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Barrier", func(t *testing.T) {
		b, err := manager.NewBarrier(ctx, c, 2)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := b.Parties(ctx); n != 2 {
			t.Fatalf("parties %d", n)
		}
		p := &process.Process{Func: childBarrier, Args: []any{b}}
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
		if err := b.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		if broken, _ := b.Broken(ctx); broken {
			t.Fatal("broken after reset")
		}
	})
	t.Run("JoinableQueue", func(t *testing.T) {
		q, err := manager.NewJoinableQueue[int](ctx, c, 5)
		if err != nil {
			t.Fatal(err)
		}
		if empty, _ := q.Empty(ctx); !empty {
			t.Fatal("new queue not empty")
		}
		runChild(t, childQueue, q)
		if n, _ := q.Qsize(ctx); n != 5 {
			t.Fatalf("qsize %d", n)
		}
		if full, _ := q.Full(ctx); !full {
			t.Fatal("queue of 5 with 5 items not full")
		}
		for i := range 5 {
			v, err := q.Get(ctx)
			if err != nil || v != i {
				t.Fatalf("get %d: %v %v", i, v, err)
			}
			if err := q.TaskDone(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := q.Join(ctx); err != nil {
			t.Fatal(err)
		}
		if err := q.TaskDone(ctx); !errors.Is(err, manager.ErrOverRelease) {
			t.Fatalf("extra TaskDone: %v", err)
		}
	})
	t.Run("List", func(t *testing.T) {
		l, err := manager.NewList(ctx, c, 1, 2, 3)
		if err != nil {
			t.Fatal(err)
		}
		runChild(t, childList, l)
		got, err := l.Copy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]int{1, 2, 3, 5, 6, 7}, got); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	})
	t.Run("Dict", func(t *testing.T) {
		d, err := manager.NewDict(ctx, c, map[string]int{"a": 0, "b": 1})
		if err != nil {
			t.Fatal(err)
		}
		runChild(t, childDict, d)
		got, err := d.Copy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]int{"a": 0, "b": 1, "c": 2}, got); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	})
	t.Run("ValueArray", func(t *testing.T) {
		v, err := manager.NewValue(ctx, c, 1)
		if err != nil {
			t.Fatal(err)
		}
		a, err := manager.NewArray(ctx, c, []int{1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		runChild(t, childValue, v, a)
		if x, _ := v.Get(ctx); x != 2 {
			t.Fatalf("value %d", x)
		}
		got, _ := a.Copy(ctx)
		if diff := cmp.Diff([]int{10, 20, 30}, got); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	})
	t.Run("Nested", func(t *testing.T) {
		inner, _ := manager.NewList[int](ctx, c)
		d, _ := manager.NewDict[string, *manager.List[int]](ctx, c)
		if err := d.Set(ctx, "inner", inner); err != nil {
			t.Fatal(err)
		}
		runChild(t, childNested, d)
		got, _ := inner.Copy(ctx)
		if diff := cmp.Diff([]int{1, 1, 1}, got); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		if ok, _ := d.Contains(ctx, "inner2"); !ok {
			t.Fatal("the child's last call did not arrive")
		}
	})
	t.Run("Namespace", func(t *testing.T) {
		n, err := manager.NewNamespace(ctx, c, map[string]any{"x": 1})
		if err != nil {
			t.Fatal(err)
		}
		runChild(t, childNamespace, n)
		s, err := n.String(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := "Namespace(x=1, y='child')"; s != want {
			t.Fatalf("String() = %q, want %q", s, want)
		}
	})
}
