// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"flag"
	"os"
	"runtime"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// A started server that gets requests in a batch (two calls in flight at
// once) goes back to the default GOMAXPROCS. The EnvReader type that
// reports it is registered by lifecycle_test.go.
func TestStartedServerProcsAfterBatch(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set: the server keeps it")
	}
	if f := flag.Lookup("test.cpu"); f != nil && f.Value.String() != "" {
		t.Skip("-cpu changes this process's GOMAXPROCS, the default to compare with")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	procs := func() int {
		t.Helper()
		o, err := m.Create(ctx, "EnvReader")
		if err != nil {
			t.Fatal(err)
		}
		defer o.Release(ctx)
		n, err := Call[int](ctx, o, "Procs")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := procs(); n != 1 {
		t.Fatalf("GOMAXPROCS %d with only the parent's sequential calls, want 1", n)
	}
	// Two pings in one write: the server reads them together and answers
	// them together.
	c := m.Client
	var pcs [2]*pendingCall
	var frames [][]byte
	c.mu.Lock()
	for i := range pcs {
		id := c.nextID.Add(1)
		pcs[i] = &pendingCall{ch: make(chan *pb.Response, 1)}
		c.calls[id] = pcs[i]
		b, err := proto.Marshal(&pb.Request{Id: id, Op: &pb.Request_Ping{Ping: &pb.Ping{}}})
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
	}
	c.mu.Unlock()
	if err := c.w.Send(frames...); err != nil {
		t.Fatal(err)
	}
	for _, pc := range pcs {
		if _, err := c.wait(ctx, pc); err != nil {
			t.Fatal(err)
		}
	}
	if n, want := procs(), runtime.GOMAXPROCS(0); n != want {
		t.Errorf("GOMAXPROCS %d after a batch, want the default %d", n, want)
	}
}
