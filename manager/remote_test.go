// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/manager"
	"github.com/multiproc/multiproc/process"
)

// Port of CPython's _TestRemoteManager: a server on TCP, a client in
// another process that connects with the address and authkey only.

var childRemoteQueue = process.Register("mgr.remote.queue", func(ctx context.Context, q *manager.Queue[any]) error {
	// The proxy carries the server's TCP address and authkey; the child
	// connects on this first call.
	values := []any{"hello world", nil, true, 2.25, "hall\u00e5 v\u00e4rlden", "\u043f\u0440\u0438\u0432\u0456\u0442 \u0441\u0432\u0456\u0442", []byte("hall\xe5 v\xe4rlden")}
	for _, v := range values {
		if err := q.Put(ctx, v); err != nil {
			return err
		}
	}
	return nil
})

func TestRemoteManager(t *testing.T) {
	mptest.CheckChildren(t)
	ts := startServer(t, "tcp")
	ctx := ctxT(t)
	if !strings.HasPrefix(ts.addr, "127.0.0.1:") {
		t.Fatalf("address %q", ts.addr)
	}
	q, err := manager.NewQueue[any](ctx, ts.client, 0)
	if err != nil {
		t.Fatal(err)
	}
	runChild(t, childRemoteQueue, q)
	want := []any{"hello world", nil, true, 2.25, "hall\u00e5 v\u00e4rlden", "\u043f\u0440\u0438\u0432\u0456\u0442 \u0441\u0432\u0456\u0442", []byte("hall\xe5 v\xe4rlden")}
	var got []any
	for range want {
		v, err := q.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	// Something that cannot be encoded is refused on the client, and
	// nothing is sent.
	if err := q.Put(ctx, func() {}); err == nil || !strings.Contains(err.Error(), "cannot send") {
		t.Fatalf("put of a func: %v", err)
	}
	type S struct {
		A int
		C chan int
	}
	if err := q.Put(ctx, S{A: 1}); err == nil || err.Error() != "manager: cannot encode field S.C: chan type" {
		t.Fatalf("put of a struct with a channel: %v", err)
	}
	if n, _ := q.Qsize(ctx); n != 0 {
		t.Fatalf("qsize %d after refused puts", n)
	}
}

func TestWrongAuthkey(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			ts := startServer(t, network)
			ctx := ctxT(t)
			c, err := manager.Connect(ctx, network, ts.addr, manager.Authkey([]byte("not the key")))
			if err == nil {
				c.Close()
				t.Fatal("connected with a wrong key")
			}
			if !errors.Is(err, ipc.ErrAuthentication) {
				t.Fatalf("wrong key: %v, want ipc.ErrAuthentication", err)
			}
			// A raw peer that skips the handshake gets nothing either.
			conn, err := ipc.Dial(ctx, network, ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			req := []byte{0x08, 0x01, 0x52, 0x00} // Request{id: 1, ping: {}}
			conn.SendBytes(ctx, req)
			b, err := conn.RecvBytes(ctx)
			if err == nil && !strings.HasPrefix(string(b), "#CHALLENGE#") {
				t.Fatalf("unauthenticated peer got %q", b)
			}
			conn.Close()
			// A client that connects and stays silent does not hold up
			// the others (the handshake of a silent peer only ends with
			// ipc's handshake timeout, longer than this test's context).
			silent, err := net.Dial(network, ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()
			// Nor does one that hangs up in the middle of the handshake.
			nc, err := net.Dial(network, ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			nc.Close()
			// The server still serves good clients, old and new.
			if err := ts.client.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			c2, err := manager.Connect(ctx, network, ts.addr, manager.Authkey(ts.key))
			if err != nil {
				t.Fatalf("good client after bad ones: %v", err)
			}
			c2.Close()
			if _, err := manager.Connect(ctx, network, ts.addr); err == nil {
				t.Fatal("Connect without a key succeeded")
			}
		})
	}
}

// Port of _TestManagerRestart: a server rebinding the same TCP address
// right after the previous one shut down.
func TestManagerRestart(t *testing.T) {
	ctx := ctxT(t)
	key := []byte("restart key")
	l, err := manager.Listen("tcp", "127.0.0.1:0", manager.Authkey(key))
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	for round := range 2 {
		if round > 0 {
			if l, err = manager.Listen("tcp", addr, manager.Authkey(key)); err != nil {
				t.Fatalf("rebind %s: %v", addr, err)
			}
		}
		srv := manager.NewServer()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ctx, l) }()
		c, err := manager.Connect(ctx, "tcp", addr, manager.Authkey(key))
		if err != nil {
			t.Fatal(err)
		}
		q, _ := manager.NewQueue[string](ctx, c, 0)
		q.Put(ctx, "hello")
		if v, _ := q.Get(ctx); v != "hello" {
			t.Fatalf("round %d: got %q", round, v)
		}
		if err := c.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		<-srv.Done()
		if err := <-served; !errors.Is(err, manager.ErrClosed) {
			t.Fatalf("Serve: %v", err)
		}
		srv.Close()
		c.Close()
	}
}

// A client process killed while holding references and a lock: its
// references are dropped (objects freed) and the lock is released, the
// next acquirer being told ErrOwnerDead.
var childHolder = process.Register("mgr.holder", func(ctx context.Context, lock *manager.Lock, ready *ipc.Conn, network, address string, key []byte) error {
	return holdUntilKilled(ctx, lock, ready, network, address, manager.Authkey(key))
})

// holdUntilKilled takes lock, connects to the server with opts and makes
// three objects only this process holds, says so on ready, and waits to
// be killed.
func holdUntilKilled(ctx context.Context, lock *manager.Lock, ready *ipc.Conn, network, address string, opts ...manager.Option) error {
	if err := lock.Acquire(ctx); err != nil {
		return err
	}
	c, err := manager.Connect(ctx, network, address, opts...)
	if err != nil {
		return err
	}
	for range 3 {
		if _, err := manager.NewDict[string, int](ctx, c); err != nil {
			return err
		}
	}
	if err := ready.SendBytes(ctx, []byte("ready")); err != nil {
		return err
	}
	<-ctx.Done() // until killed
	return nil
}

func TestClientKilledHoldingReferences(t *testing.T) {
	mptest.CheckChildren(t)
	ts := startServer(t, "unix")
	ctx, c := ctxT(t), ts.client
	lock, err := manager.NewLock(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := c.Objects(ctx)
	mine, theirs, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	p := &process.Process{Func: childHolder, Args: []any{lock, theirs, "unix", ts.addr, ts.key}}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	if _, err := mine.RecvBytes(ctx); err != nil {
		t.Fatalf("child not ready: %v (%v)", err, p.Wait())
	}
	during, _ := c.Objects(ctx)
	if len(during) != len(before)+3 {
		t.Fatalf("child holds %d objects, want 3", len(during)-len(before))
	}
	if locked, _ := lock.Locked(ctx); !locked {
		t.Fatal("child does not hold the lock")
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	err = p.Wait()
	var ee *process.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("killed child: %v", err)
	}
	if code, _ := p.ExitCode(); code != -int(syscall.SIGKILL) {
		t.Fatalf("exit code %d", code)
	}
	// The server sees the connections end: the lock is handed over with
	// ErrOwnerDead and the dead client's references are dropped.
	if err := lock.Acquire(ctx); !errors.Is(err, manager.ErrOwnerDead) {
		t.Fatalf("acquire after the holder died: %v, want ErrOwnerDead", err)
	}
	if err := lock.Release(ctx); err != nil {
		t.Fatal(err)
	}
	waitObjectsFreed(ctx, t, c, before)
	if err := lock.Acquire(ctx); err != nil {
		t.Fatalf("second acquire: %v", err)
	}
	lock.Release(ctx)
}

// waitObjectsFreed waits, bounded by ctx, until c lists the objects
// before again. A killed client's connections (its proxies' shared client
// and the ones it dialled) end independently, each seen by its own server
// goroutine, so one may be seen closed after the lock its sibling held was
// handed over.
func waitObjectsFreed(ctx context.Context, t *testing.T, c *manager.Client, before []manager.ObjectInfo) {
	t.Helper()
	var after []manager.ObjectInfo
	for {
		after, _ = c.Objects(ctx)
		if cmp.Equal(before, after) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Fatalf("objects of the killed client not freed (-before +after):\n%s", diff)
	}
}

func TestManyGoroutinesOneProxy(t *testing.T) {
	ts := startServer(t, "unix")
	ctx := ctxT(t)
	v, err := manager.NewValue(ctx, ts.client, 0)
	if err != nil {
		t.Fatal(err)
	}
	const goroutines = 100
	calls := 1000
	if raceEnabled {
		calls = 100 // 100,000 calls take longer than ctxT's deadline under -race on 2 CPUs
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				if _, err := v.Add(ctx, 1); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, _ := v.Get(ctx); n != goroutines*calls {
		t.Fatalf("value %d, want %d", n, goroutines*calls)
	}
}
