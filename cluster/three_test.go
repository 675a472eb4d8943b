// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startServers starts n standalone servers forming one NATS cluster
// (routes to the first one; the others are gossiped), each with its own
// store, and waits until JetStream answers through all of them.
func startServers(t *testing.T, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var urls, routes []string
	if n > 1 {
		routes = freeAddrs(t, n)
	}
	for i := range n {
		cfg := ServerConfig{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Name: "s" + u64(uint64(i))}
		if n > 1 {
			cfg.ClusterName, cfg.ClusterListen, cfg.Routes = "three", routes[i], routes
		}
		s, err := StartServer(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		urls = append(urls, s.ClientURL())
	}
	for _, u := range urls {
		nc, err := nats.Connect(u)
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		for {
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.AccountInfo(actx)
			acancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				nc.Close()
				t.Fatalf("JetStream of the %d-server cluster never became available through %s: %v", n, u, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		nc.Close()
	}
	return urls
}

// freeAddrs returns n loopback addresses whose ports were free a moment
// ago.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		defer l.Close()
	}
	return addrs
}

// TestThreeServerReplicas: on a cluster of three servers (each with its
// own store, routed over TCP) the pool's stream and status bucket get
// three replicas, a Map completes, and ReadStatus reports them; on a
// single server, one.
func TestThreeServerReplicas(t *testing.T) {
	for _, tc := range []struct{ servers, replicas int }{{1, 1}, {3, 3}} {
		t.Run(u64(uint64(tc.servers)), func(t *testing.T) { testReplicas(t, tc.servers, tc.replicas) })
	}
}

func testReplicas(t *testing.T, servers, replicas int) {
	tc := struct{ servers, replicas int }{servers, replicas}
	{
		// The leak checks run after the servers are closed.
		mptest.CheckChildren(t)
		mptest.CheckFDs(t)
		urls := startServers(t, tc.servers)
		url := strings.Join(urls, ",")
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		p, err := New(ctx, URL(url), Agents(1), AgentWorkers(2))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		defer p.Close()
		got, err := square.Map(ctx, p, ints(100))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		for i, v := range got {
			if v != i*i {
				t.Fatalf("result %d = %d", i, v)
			}
		}
		st, err := ReadStatus(ctx, urls[len(urls)-1], Credentials{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if st.Replicas != tc.replicas {
			t.Errorf("%d servers: the stream has %d replicas, want %d", tc.servers, st.Replicas, tc.replicas)
		}
		if len(st.Agents) != 1 || st.Agents[0].Capacity != 2 || !st.Agents[0].Match {
			t.Errorf("%d servers: agents %+v", tc.servers, st.Agents)
		}
		kvr, _ := p.kv.Status(context.Background())
		if r := kvr.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas; r != tc.replicas {
			t.Errorf("%d servers: the status bucket has %d replicas, want %d", tc.servers, r, tc.replicas)
		}
	}
}

func TestStreamReplicasOption(t *testing.T) {
	o := defaults()
	for _, n := range []int{0, 6} {
		if StreamReplicas(n)(&o) == nil {
			t.Errorf("StreamReplicas(%d) accepted", n)
		}
	}
	if err := StreamReplicas(3)(&o); err != nil || o.replicas != 3 {
		t.Errorf("StreamReplicas(3): %v, %d", err, o.replicas)
	}
}
