// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/manager"
	"github.com/multiproc/multiproc/process"
)

func TestMain(m *testing.M) {
	process.Init()
	mptest.Main(m)
}

// testServer is a server listening on a unix socket in a temporary
// directory, with a client connected to it.
type testServer struct {
	srv     *manager.Server
	client  *manager.Client
	network string
	addr    string
	key     []byte
	served  chan error
}

func startServer(t testing.TB, network string) *testServer {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "m.sock")
	}
	l, err := manager.Listen(network, addr, manager.Authkey(key))
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: manager.NewServer(), network: network, addr: l.Addr().String(), key: key, served: make(chan error, 1)}
	go func() { ts.served <- ts.srv.Serve(context.Background(), l) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := manager.Connect(ctx, network, ts.addr, manager.Authkey(key))
	if err != nil {
		ts.srv.Close()
		t.Fatal(err)
	}
	ts.client = c
	t.Cleanup(func() {
		c.Close()
		ts.srv.Close()
		if err := <-ts.served; !errors.Is(err, manager.ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	})
	return ts
}

// pipeServer serves one end of an ipc.Pipe and returns a client on the other.
func pipeServer(t testing.TB) (*manager.Server, *manager.Client) {
	t.Helper()
	srv, c, _ := pipeServerDone(t)
	return srv, c
}

// pipeServerDone is pipeServer that also returns a channel closed when
// the server has finished with the connection (ServeConn returned).
func pipeServerDone(t testing.TB) (*manager.Server, *manager.Client, <-chan struct{}) {
	t.Helper()
	a, b, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	srv := manager.NewServer()
	done := make(chan struct{})
	go func() { srv.ServeConn(context.Background(), a); close(done) }()
	c := manager.NewClient(b)
	t.Cleanup(func() {
		c.Close()
		<-done
		srv.Close()
	})
	return srv, c, done
}

// recvErr receives a call's error, or fails with a clear message when the
// call is still waiting as ctx ends.
func recvErr(ctx context.Context, errc <-chan error) error {
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return fmt.Errorf("the call did not return before the test's deadline: %w", ctx.Err())
	}
}

// ctxT bounds a whole test: a generous ceiling (a -race run on a loaded
// 2-core machine starts python3 and server processes several times over),
// never a pass condition.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mptestFDs(t *testing.T) { mptest.CheckFDs(t) }
