// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/manager"
)

var (
	initMarker = manager.RegisterInitializer("test.init", func(ctx context.Context) error {
		// Runs in the server process, before it serves.
		return os.Setenv("MGR_TEST_INITIALIZED", "yes")
	})
	initFails = manager.RegisterInitializer("test.init.fails", func(ctx context.Context) error {
		return errors.New("initializer says no")
	})
	// EnvReader exposes the server process's environment, to observe the
	// initializer's effect.
	_ = manager.RegisterType("EnvReader", func() *EnvReader { return &EnvReader{} })
)

type EnvReader struct{}

// Procs reports the server process's GOMAXPROCS.
func (EnvReader) Procs() int { return runtime.GOMAXPROCS(0) }

// A started server runs on one P while its parent's pipe is its only
// connection (and its calls come one at a time), and on the default
// number once another client connects.
func TestStartedServerProcs(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set: the server keeps it")
	}
	if f := flag.Lookup("test.cpu"); f != nil && f.Value.String() != "" {
		t.Skip("-cpu changes this process's GOMAXPROCS, the default to compare with")
	}
	ctx := ctxT(t)
	key := []byte("procs-test-key")
	m, err := manager.Start(ctx, manager.Authkey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	procs := func(c *manager.Client) int {
		t.Helper()
		o, err := c.Create(ctx, "EnvReader")
		if err != nil {
			t.Fatal(err)
		}
		defer o.Release(ctx)
		n, err := manager.Call[int](ctx, o, "Procs")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := procs(m.Client); n != 1 {
		t.Errorf("GOMAXPROCS %d with only the parent connected, want 1", n)
	}
	// The one P is the server's own business: what it starts (and what
	// its objects' methods read) sees no GOMAXPROCS in the environment.
	env, err := m.Client.Create(ctx, "EnvReader")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"GOMAXPROCS", "MULTIPROC_MANAGER_ONE_P"} {
		if v, err := manager.Call[string](ctx, env, "Get", name); err != nil || v != "" {
			t.Errorf("server environment %s=%q (%v), want it unset", name, v, err)
		}
	}
	env.Release(ctx)
	network, address := m.Address()
	c, err := manager.Connect(ctx, network, address, manager.Authkey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := runtime.GOMAXPROCS(0) // the same default: same machine, same affinity
	if n := procs(c); n != want {
		t.Errorf("GOMAXPROCS %d after a client connected, want the default %d", n, want)
	}
	if n := procs(m.Client); n != want {
		t.Errorf("GOMAXPROCS %d through the parent's pipe afterwards, want %d", n, want)
	}
}

func (EnvReader) Get(name string) string { return os.Getenv(name) }

// Port of TestInitializers and the lifecycle parts of _TestMyManager.
func TestStartShutdown(t *testing.T) {
	mptest.CheckChildren(t)
	mptest.CheckFDs(t)
	ctx := ctxT(t)
	m, err := manager.Start(ctx, manager.Initializer(initMarker))
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.Create(ctx, "EnvReader")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := manager.Call[string](ctx, r, "Get", "MGR_TEST_INITIALIZED"); err != nil || v != "yes" {
		t.Fatalf("initializer did not run in the server: %q %v", v, err)
	}
	if m.Pid() == os.Getpid() || m.Pid() <= 0 {
		t.Fatalf("server pid %d", m.Pid())
	}
	// A second client connects to the running server.
	network, address := m.Address()
	if network != "unix" || address == "" {
		t.Fatalf("address %q %q", network, address)
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("close after shutdown: %v", err)
	}
	if code, exited := m.Process().ExitCode(); !exited || code != 0 {
		t.Fatalf("server exit code %d (exited %v)", code, exited)
	}
	if _, err := manager.NewDict[string, int](ctx, m.Client); !errors.Is(err, manager.ErrClosed) {
		t.Fatalf("create after shutdown: %v, want ErrClosed", err)
	}
	if _, err := os.Stat(address); !os.IsNotExist(err) {
		t.Fatalf("socket %s left behind: %v", address, err)
	}

	if _, err := manager.Start(ctx, manager.Initializer(initFails)); err == nil || !strings.Contains(err.Error(), "initializer says no") {
		t.Fatalf("failing initializer: %v", err)
	}
	if _, err := manager.Start(ctx, manager.Initializer("no.such.init")); err == nil {
		t.Fatal("unknown initializer accepted")
	}
}

func TestStartTCPAndConnect(t *testing.T) {
	mptest.CheckChildren(t)
	ctx := ctxT(t)
	key := []byte("tcp key")
	m, err := manager.Start(ctx, manager.Address("tcp", "127.0.0.1:0"), manager.Authkey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	network, address := m.Address()
	if network != "tcp" || !strings.HasPrefix(address, "127.0.0.1:") {
		t.Fatalf("address %s %s", network, address)
	}
	ns, _ := manager.NewNamespace(ctx, m.Client)
	ns.Set(ctx, "x", 42)
	// Connect to the existing server: proxies of one client can be stored
	// and found by another.
	d, _ := manager.NewDict[string, *manager.Namespace](ctx, m.Client)
	d.Set(ctx, "ns", ns)
	c2, err := manager.Connect(ctx, network, address, manager.Authkey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	objs, err := c2.Objects(ctx)
	if err != nil || len(objs) != 2 {
		t.Fatalf("objects %v %v", objs, err)
	}
}

func TestClosedClient(t *testing.T) {
	srv, c, served := pipeServerDone(t)
	ctx := ctxT(t)
	d, _ := manager.NewDict[string, int](ctx, c)
	if srv.NumObjects() != 1 {
		t.Fatalf("%d objects", srv.NumObjects())
	}
	c.Close()
	c.Close()
	if err := d.Set(ctx, "a", 1); !errors.Is(err, manager.ErrClosed) {
		t.Fatalf("call after close: %v", err)
	}
	// The server dropped the closed client's references once it saw the
	// connection end (ServeConn returned), while it still runs.
	select {
	case <-served:
	case <-ctx.Done():
		t.Fatal("the server did not notice the closed client")
	}
	if n := srv.NumObjects(); n != 0 {
		t.Fatalf("%d objects after the client closed, server still running", n)
	}
}

func TestReleaseFreesObject(t *testing.T) {
	srv, c := pipeServer(t)
	ctx := ctxT(t)
	l, _ := manager.NewList[int](ctx, c)
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if n := srv.NumObjects(); n != 0 {
		t.Fatalf("%d objects after release", n)
	}
	if err := l.Append(ctx, 1); !errors.Is(err, manager.ErrReleased) {
		t.Fatalf("call after release: %v", err)
	}
}

// Cancellation takes nothing: a Get cancelled while the server holds it
// waiting leaves the next item in the queue, an Acquire cancelled while
// waiting in the server does not hold the lock.
func TestCancelledCallsTakeNothing(t *testing.T) {
	_, c := pipeServer(t)
	ctx := ctxT(t)
	q, _ := manager.NewQueue[int](ctx, c, 1)
	cctx, cancel := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() { _, err := q.Get(cctx); got <- err }()
	mptest.WaitBlocked(t, "manager.(*queueObj).waitChange") // the server holds the Get
	cancel()
	if err := recvErr(ctx, got); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled get: %v", err)
	}
	q.Put(ctx, 7)
	if v, err := q.GetNowait(ctx); err != nil || v != 7 {
		t.Fatalf("item after a cancelled get: %v %v", v, err)
	}
	if _, err := q.GetNowait(ctx); !errors.Is(err, manager.ErrEmpty) {
		t.Fatalf("get on empty: %v", err)
	}
	if _, err := q.GetTimeout(ctx, 10*time.Millisecond); !errors.Is(err, manager.ErrEmpty) {
		t.Fatalf("get with timeout on empty: %v", err)
	}
	q.Put(ctx, 1)
	if err := q.PutNowait(ctx, 2); !errors.Is(err, manager.ErrFull) {
		t.Fatalf("put on full: %v", err)
	}

	l, _ := manager.NewLock(ctx, c)
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.TryAcquire(ctx); ok {
		t.Fatal("acquired a held lock")
	}
	cctx, cancel = context.WithCancel(ctx)
	go func() { got <- l.Acquire(cctx) }()
	mptest.WaitBlocked(t, "manager.(*lockCore).acquire") // the server holds the Acquire
	cancel()
	if err := recvErr(ctx, got); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if locked, _ := l.Locked(ctx); locked {
		t.Fatal("a cancelled acquire left the lock held")
	}
	if err := l.Release(ctx); !errors.Is(err, manager.ErrNotHeld) {
		t.Fatalf("double release: %v", err)
	}
}

func TestConditionEventBarrier(t *testing.T) {
	_, c := pipeServer(t)
	ctx := ctxT(t)
	// Condition: Wait and Notify need the lock; Notify(2) wakes two of
	// four waiters, NotifyAll the others. Each waiter is its own proxy
	// (its own holder of the lock): reading a proxy back from a shared list
	// gives a new proxy each time.
	cond, _ := manager.NewCondition(ctx, c)
	if err := cond.Wait(ctx); !errors.Is(err, manager.ErrNotHeld) {
		t.Fatalf("wait without the lock: %v", err)
	}
	if err := cond.Notify(ctx); !errors.Is(err, manager.ErrNotHeld) {
		t.Fatalf("notify without the lock: %v", err)
	}
	holder, _ := manager.NewList(ctx, c, cond)
	entered, _ := manager.NewValue(ctx, c, 0)
	woken := make(chan struct{}, 4)
	for range 4 {
		w, err := holder.Get(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if err := w.Acquire(ctx); err != nil {
				t.Error(err)
				return
			}
			entered.Add(ctx, 1)
			if err := w.Wait(ctx); err != nil {
				t.Error(err)
			}
			w.Release(ctx)
			woken <- struct{}{}
		}()
	}
	// All four are waiting once the count is 4 while we hold the lock
	// (each incremented it holding the lock, then released it in Wait).
	for {
		cond.Acquire(ctx)
		n, _ := entered.Get(ctx)
		if n == 4 {
			break
		}
		cond.Release(ctx)
	}
	cond.Notify(ctx, 2)
	cond.Release(ctx)
	<-woken
	<-woken
	cond.Acquire(ctx)
	cond.NotifyAll(ctx)
	cond.Release(ctx)
	<-woken
	<-woken

	// Event: Wait after Set returns at once; a cancelled Wait returns ctx.Err().
	e, _ := manager.NewEvent(ctx, c)
	tctx, tcancel := context.WithTimeout(ctx, 10*time.Millisecond)
	if err := e.Wait(tctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait on an unset event: %v", err)
	}
	tcancel()
	e.Set(ctx)
	if err := e.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	e.Clear(ctx)
	if set, _ := e.IsSet(ctx); set {
		t.Fatal("set after clear")
	}

	// Barrier(3): arrival indexes are a permutation of 0..2; abort breaks
	// waiters; reset makes it usable again.
	b, _ := manager.NewBarrier(ctx, c, 3)
	idx := make(chan int, 3)
	for range 3 {
		go func() {
			i, err := b.Wait(ctx)
			if err != nil {
				t.Error(err)
			}
			idx <- i
		}()
	}
	seen := map[int]bool{}
	for range 3 {
		seen[<-idx] = true
	}
	if !seen[0] || !seen[1] || !seen[2] {
		t.Fatalf("indexes %v", seen)
	}
	errc := make(chan error, 1)
	go func() { _, err := b.Wait(ctx); errc <- err }()
	for n := 0; n != 1; { // until the server has the waiter
		n, _ = b.NWaiting(ctx)
	}
	b.Abort(ctx)
	if err := <-errc; !errors.Is(err, manager.ErrBrokenBarrier) {
		t.Fatalf("wait on an aborted barrier: %v", err)
	}
	if broken, _ := b.Broken(ctx); !broken {
		t.Fatal("not broken after abort")
	}
	b.Reset(ctx)
	if broken, _ := b.Broken(ctx); broken {
		t.Fatal("broken after reset")
	}
	// A waiter whose context ends breaks the barrier for everyone.
	tctx, tcancel = context.WithTimeout(ctx, 10*time.Millisecond)
	defer tcancel()
	if _, err := b.Wait(tctx); !errors.Is(err, manager.ErrBrokenBarrier) {
		t.Fatalf("timed-out barrier wait: %v", err)
	}
}
