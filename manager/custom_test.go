// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/manager"
)

// Port of CPython's _TestMyManager: a registered type whose exported
// methods are callable and nothing else, errors raised by a method reach
// the caller, and a method may return another shared object.

type Foo struct{}

func (f *Foo) F() string { return "f()" }

// G fails like CPython's Foo.g, which raises ValueError.
func (f *Foo) G() error { return errors.New("ValueError: g()") }

// h is not exported, so it cannot be called (CPython's _h).
func (f *Foo) h() string { return "_h()" }

var _ = (*Foo).h // exists, but is not callable through a proxy

// Counter is a type whose method returns another registered object.
type Counter struct {
	mu sync.Mutex
	n  int
}

func (c *Counter) Add(d int) int { c.mu.Lock(); defer c.mu.Unlock(); c.n += d; return c.n }

// Iter returns a new shared iterator over 0..n-1 (CPython's IteratorProxy).
func (c *Counter) Iter(n int) *Iterator { return &Iterator{n: n} }

type Iterator struct {
	mu   sync.Mutex
	i, n int
}

// Next returns the next value, or manager.ErrIndexOutOfRange at the end
// (CPython's StopIteration).
func (it *Iterator) Next() (int, error) {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.i >= it.n {
		return 0, fmt.Errorf("iterator exhausted: %w", manager.ErrIndexOutOfRange)
	}
	it.i++
	return it.i - 1, nil
}

// Wait blocks until ctx ends: cancellation reaches custom methods.
func (it *Iterator) Wait(ctx context.Context) error {
	<-ctx.Done()
	select {
	case iteratorWaitCancelled <- struct{}{}:
	default:
	}
	return ctx.Err()
}

// iteratorWaitCancelled receives when a Wait saw its context end (in the
// process running the server).
var iteratorWaitCancelled = make(chan struct{}, 1)

// A call of a custom method blocked in the server is cancelled there: the
// method's context ends, and the caller gets context.Canceled.
func TestCancelReachesCustomMethod(t *testing.T) {
	ts := startServer(t, "unix") // in this process: its goroutines are visible
	ctx := ctxT(t)
	it, err := ts.client.Create(ctx, "Iterator", 1)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-iteratorWaitCancelled: // an earlier test's
	default:
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := it.Call(cctx, "Wait"); done <- err }()
	mptest.WaitBlocked(t, "manager_test.(*Iterator).Wait") // the server runs it
	cancel()
	if err := recvErr(ctx, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait: %v", err)
	}
	// A custom method's call returns at once (it may ignore its
	// context); this one sees the cancellation in the server.
	select {
	case <-iteratorWaitCancelled:
	case <-ctx.Done():
		t.Fatal("the method blocked in the server never saw its context end")
	}
	if _, err := manager.Call[int](ctx, it, "Next"); err != nil {
		t.Fatalf("the object after a cancelled call: %v", err)
	}
}

var (
	_ = manager.RegisterType("Foo", func() *Foo { return &Foo{} })
	_ = manager.RegisterType("Counter", func(start int) (*Counter, error) {
		if start < 0 {
			return nil, errors.New("negative start")
		}
		return &Counter{n: start}, nil
	})
	_ = manager.RegisterType("Iterator", func(n int) *Iterator { return &Iterator{n: n} })
)

func TestMyManager(t *testing.T) {
	m := startManager(t)
	ctx, c := ctxT(t), m.Client
	foo, err := c.Create(ctx, "Foo")
	if err != nil {
		t.Fatal(err)
	}
	got, err := foo.Call(ctx, "F")
	if err != nil || got != "f()" {
		t.Fatalf("F() = %v, %v", got, err)
	}
	_, err = foo.Call(ctx, "G")
	var re *manager.RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "ValueError: g()") {
		t.Fatalf("G() = %v, want a RemoteError with the method's message", err)
	}
	for _, name := range []string{"h", "_h", "mu"} {
		_, err := foo.Call(ctx, name)
		if !errors.Is(err, manager.ErrUnknownMethod) || !strings.Contains(err.Error(), name) {
			t.Fatalf("%s(): %v, want ErrUnknownMethod naming it", name, err)
		}
	}
	if _, err := c.Create(ctx, "NoSuchType"); !errors.Is(err, manager.ErrUnknownType) || !strings.Contains(err.Error(), "NoSuchType") {
		t.Fatalf("create unknown type: %v", err)
	}
	if _, err := c.Create(ctx, "Counter", -1); err == nil || !strings.Contains(err.Error(), "negative start") {
		t.Fatalf("constructor error: %v", err)
	}
	if _, err := c.Create(ctx, "Counter", "x"); !errors.Is(err, manager.ErrBadArgs) {
		t.Fatalf("bad constructor argument: %v", err)
	}

	cnt, err := c.Create(ctx, "Counter", 10)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := manager.Call[int](ctx, cnt, "Add", 5); err != nil || n != 15 {
		t.Fatalf("Add = %v, %v", n, err)
	}
	if _, err := manager.Call[int](ctx, cnt, "Add", 1, 2); !errors.Is(err, manager.ErrBadArgs) {
		t.Fatalf("Add with 2 args: %v", err)
	}
	it, err := manager.Call[*manager.Object](ctx, cnt, "Iter", 3)
	if err != nil {
		t.Fatal(err)
	}
	if it.TypeID() != "Iterator" {
		t.Fatalf("returned proxy of type %q", it.TypeID())
	}
	var seq []int
	for {
		v, err := manager.Call[int](ctx, it, "Next")
		if errors.Is(err, manager.ErrIndexOutOfRange) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seq = append(seq, v)
	}
	if fmt.Sprint(seq) != "[0 1 2]" {
		t.Fatalf("iterated %v", seq)
	}
	// Cancellation reaching a blocked custom method: TestCancelReachesCustomMethod.
	types, err := c.Types(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(types, ","), "Counter") {
		t.Fatalf("types %v lack Counter", types)
	}
}

// Stubborn's method ignores cancellation; a cancelled call of it returns
// at once anyway, and its late answer (a new shared object) is dropped
// without leaking the object.
type Stubborn struct{}

var (
	stubbornEntered  = make(chan struct{}, 1)
	stubbornGate     = make(chan struct{})
	stubbornReturned atomic.Bool
)

func (Stubborn) Block() *Iterator {
	stubbornEntered <- struct{}{}
	<-stubbornGate
	defer stubbornReturned.Store(true)
	return &Iterator{n: 1}
}

var _ = manager.RegisterType("Stubborn", func() *Stubborn { return &Stubborn{} })

func TestCancelDetachesStubbornMethod(t *testing.T) {
	stubbornGate = make(chan struct{}) // fresh for -count=N
	stubbornReturned.Store(false)
	ts := startServer(t, "unix")
	ctx := ctxT(t)
	s, err := ts.client.Create(ctx, "Stubborn")
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := s.Call(cctx, "Block"); done <- err }()
	<-stubbornEntered // the server runs it
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Block: %v", err)
	}
	close(stubbornGate) // the method returns now; nobody waits for it
	// The late response's object is given back with the next call: once
	// the method has returned, the server's count comes back to one.
	for settled := 0; settled < 3; {
		objs, err := ts.client.Objects(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) == 1 && stubbornReturned.Load() {
			settled++
		}
		ts.client.FlushReleases()
	}
}
