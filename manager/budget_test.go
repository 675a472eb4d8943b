// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/manager"
	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// flooder is a raw connection that holds a Lock of its own and then sends
// n Acquire requests on it, each of which blocks in the server, from one
// goroutine, as fast as the server reads them. stop closes the connection
// (the client leaves) and waits for the sender.
func flooder(t *testing.T, network, addr string, key []byte, n int) (stop func()) {
	t.Helper()
	conn, err := ipc.Dial(ctxT(t), network, addr, ipc.Authkey(key))
	if err != nil {
		t.Fatal(err)
	}
	r := &rawClient{t: t, conn: conn}
	resp := r.do(&pb.Request{Op: &pb.Request_Create{Create: &pb.Create{Typeid: "Lock"}}})
	lock := resp.GetValue().GetProxy()
	if resp.Error != nil || lock == nil {
		t.Fatalf("create Lock: %v", resp)
	}
	acquire := func(id uint64) *pb.Request {
		return &pb.Request{Id: id, Op: &pb.Request_Call{Call: &pb.Call{Object: lock.Id, Method: "Acquire", Owner: 1}}}
	}
	if resp := r.do(acquire(0)); resp.Error != nil {
		t.Fatalf("first Acquire: %v", resp.Error)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		const batch = 500
		frames := make([][]byte, 0, batch)
		for i := range n {
			b, _ := proto.Marshal(acquire(uint64(1000 + i)))
			frames = append(frames, b)
			if len(frames) == batch || i == n-1 {
				if err := conn.SendFrames(context.Background(), frames...); err != nil {
					return // closed by stop
				}
				frames = frames[:0]
			}
		}
	}()
	return func() {
		conn.Close()
		<-done
	}
}

// waitStats polls stats until ok accepts them; the test's context bounds
// the wait.
func waitStats(t *testing.T, what string, stats func() (manager.ServerStats, error), ok func(manager.ServerStats) bool) manager.ServerStats {
	t.Helper()
	ctx := ctxT(t)
	for {
		st, err := stats()
		if err != nil {
			t.Fatal(err)
		}
		if ok(st) {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: never happened; last stats %+v", what, st)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Issue 14 item 4: one authenticated connection sends 50,000 blocking
// Acquire requests on a lock it holds, to a server process (manager.Start).
// The server stops reading it at its bound: its goroutines and heap stay
// bounded (measured by the server itself, through the stats request),
// other clients keep being served, blocking calls included, and once the
// flooding client leaves everything it held is released. Before the fix
// the server grew to 50,014 goroutines and 286 MB.
func TestFloodOfBlockingCallsIsBounded(t *testing.T) {
	ctx := ctxT(t)
	key := make([]byte, 32)
	rand.Read(key)
	m, err := manager.Start(ctx, manager.Authkey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(ctx)
	network, addr := m.Client.Address()
	base, err := m.Client.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stop := flooder(t, network, addr, key, 50000)
	defer stop()
	bound := manager.DefaultMaxCallsPerConn
	waitStats(t, "flooding connection at its bound", func() (manager.ServerStats, error) { return m.Client.Stats(ctx) },
		func(st manager.ServerStats) bool { return st.Calls >= bound })

	other, err := manager.Connect(ctx, network, addr, manager.Authkey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	d, err := manager.NewDict[string, int](ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	q, err := manager.NewQueue[int](ctx, other, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		st, err := m.Client.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The flooder's bound, and the other client's two Queue calls of
		// the previous round (Put, then Get): a call leaves the server's
		// books once its answer is written, a moment after the client
		// has read that answer, so both may still be counted.
		if st.Calls > bound+2 {
			t.Fatalf("%d calls running, want at most %d (per connection) and the other client's two", st.Calls, bound)
		}
		if max := base.Goroutines + bound + 100; st.Goroutines > max {
			t.Fatalf("server has %d goroutines during the flood, want at most %d", st.Goroutines, max)
		}
		if max := base.HeapBytes + 128<<20; st.HeapBytes > max {
			t.Fatalf("server heap %d bytes during the flood, want at most %d", st.HeapBytes, max)
		}
		// Another client is served, plain and blocking calls alike.
		if err := d.Set(ctx, "k", i); err != nil {
			t.Fatal(err)
		}
		if v, err := d.Get(ctx, "k"); err != nil || v != i {
			t.Fatalf("Get = %v, %v", v, err)
		}
		if err := q.Put(ctx, i); err != nil {
			t.Fatal(err)
		}
		if v, err := q.Get(ctx); err != nil || v != i {
			t.Fatalf("Queue.Get = %v, %v", v, err)
		}
		if i == 19 {
			t.Logf("during the flood: %+v (before: %+v)", st, base)
		}
	}
	stop()
	after := waitStats(t, "flooding client's calls released", func() (manager.ServerStats, error) { return m.Client.Stats(ctx) },
		func(st manager.ServerStats) bool {
			return st.Calls == 0 && st.Conns == base.Conns+1 && st.Goroutines <= base.Goroutines+20
		})
	t.Logf("after the flooding client left: %+v", after)
}

// The server-wide bound: a second flooding connection stops at its
// reserve once the first has the server at its bound, and a third
// client's blocking calls still run (every connection has its reserve),
// even a Get that waits for a Put on the same connection.
func TestServerCallBound(t *testing.T) {
	ctx := ctxT(t)
	key := make([]byte, 32)
	rand.Read(key)
	addr := filepath.Join(t.TempDir(), "m.sock")
	l, err := manager.Listen("unix", addr, manager.Authkey(key))
	if err != nil {
		t.Fatal(err)
	}
	srv := manager.NewServer(manager.MaxCalls(40, 50))
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx, l) })
	defer func() {
		srv.Close()
		wg.Wait()
	}()
	stats := func() (manager.ServerStats, error) { return srv.Stats(), nil }
	stopA := flooder(t, "unix", addr, key, 100)
	defer stopA()
	waitStats(t, "first flooder at its bound", stats, func(st manager.ServerStats) bool { return st.Calls == 40 })
	stopB := flooder(t, "unix", addr, key, 100)
	defer stopB()
	// The server's 50 are reached; the second one has its reserve.
	want := 40 + manager.ReservedCallsPerConn
	waitStats(t, "server at its bound", stats, func(st manager.ServerStats) bool { return st.Calls == want })
	c, err := manager.Connect(ctx, "unix", addr, manager.Authkey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q, err := manager.NewQueue[string](ctx, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	go q.Put(ctx, "served")
	if v, err := q.Get(ctx); err != nil || v != "served" {
		t.Fatalf("a third client's blocking Get with the server at its bound: %q, %v", v, err)
	}
	if st := srv.Stats(); st.Calls > want+2 {
		t.Fatalf("%d calls running, want at most %d and two of the third client", st.Calls, want)
	}
	stopA()
	stopB()
	waitStats(t, "flooders' calls released", stats, func(st manager.ServerStats) bool { return st.Calls == 0 })
}

// A client that sends requests and never reads the answers is stopped by
// the server's write: the answers held back for one write are bounded, so
// 1000 answers of 256 KiB each (256 MiB) never pile up in the server.
func TestUnreadAnswersAreBounded(t *testing.T) {
	ts := startServer(t, "unix")
	base := ts.srv.Stats()
	conn, err := ipc.Dial(ctxT(t), "unix", ts.addr, ipc.Authkey(ts.key))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := &rawClient{t: t, conn: conn}
	big := &pb.Value{Kind: &pb.Value_Bytes{Bytes: make([]byte, 256<<10)}}
	resp := r.do(&pb.Request{Op: &pb.Request_Create{Create: &pb.Create{Typeid: "Value", Args: []*pb.Value{big}}}})
	obj := resp.GetValue().GetProxy()
	if resp.Error != nil || obj == nil {
		t.Fatalf("create: %v", resp)
	}
	frames := make([][]byte, 1000)
	for i := range frames {
		frames[i], _ = proto.Marshal(&pb.Request{Id: uint64(100 + i), Op: &pb.Request_GetValue{GetValue: &pb.GetValue{Object: obj.Id}}})
	}
	if err := conn.SendFrames(ctxT(t), frames...); err != nil {
		t.Fatal(err)
	}
	// The server writes until the socket is full, then waits there.
	mptest.WaitBlocked(t, "ipc.(*Batcher).Flush")
	if st := ts.srv.Stats(); st.HeapBytes > base.HeapBytes+64<<20 {
		t.Fatalf("heap %d bytes with the answers unread, want at most %d", st.HeapBytes, base.HeapBytes+64<<20)
	}
	// Reading resumes the answers.
	for range 3 {
		b, err := conn.RecvBytes(ctxT(t))
		if err != nil || len(b) < 256<<10 {
			t.Fatalf("answer of %d bytes, %v", len(b), err)
		}
	}
}

// Start hands MaxCalls to the server process it spawns.
func TestStartForwardsCallBounds(t *testing.T) {
	ctx := ctxT(t)
	key := make([]byte, 32)
	rand.Read(key)
	m, err := manager.Start(ctx, manager.Authkey(key), manager.MaxCalls(8, 100))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(ctx)
	network, addr := m.Client.Address()
	stop := flooder(t, network, addr, key, 100)
	defer stop()
	stats := func() (manager.ServerStats, error) { return m.Client.Stats(ctx) }
	waitStats(t, "flooder at its bound", stats, func(st manager.ServerStats) bool { return st.Calls >= 8 })
	// The flood does not get past the bound while the server is asked.
	for range 10 {
		if st, err := stats(); err != nil || st.Calls != 8 {
			t.Fatalf("stats %+v, %v; want 8 calls running", st, err)
		}
	}
}
