// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// serverHelper runs one server of a cluster in its own process (the
// re-executed test binary), until SIGTERM (or its parent's death). Its arguments:
// name, client address, cluster address, routes (comma-separated), store
// directory. It prints "ready" once it accepts clients.
var _ = mptest.RegisterHelper("ctest.server", func() {
	a := mptest.HelperArgs()
	if len(a) != 5 {
		fmt.Fprintf(os.Stderr, "ctest.server: want 5 arguments, got %q\n", a)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	s, err := StartServer(sctx, ServerConfig{Name: a[0], Listen: a[1], ClusterName: "bench", ClusterListen: a[2],
		Routes: strings.Split(a[3], ","), StoreDir: a[4]})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	<-ctx.Done()
	s.Close()
})

// serverProcs is a cluster of NATS servers, each its own process, on
// fixed loopback ports and stores so that a killed one can be started
// again as it was.
type serverProcs struct {
	tb                           testing.TB
	names, clients, routes, dirs []string
	cmds                         []*exec.Cmd
}

// startServerProcs starts n servers routed into one cluster and waits
// until JetStream answers through every one of them. They outlive tb (a
// benchmark's servers serve its sub-benchmarks): stop them with stop,
// which removes their stores. s.tb is the test or benchmark that fails
// when they do; set it to the one using them.
func startServerProcs(tb testing.TB, n int) *serverProcs {
	tb.Helper()
	s := &serverProcs{tb: tb, clients: freeAddrs(tb, n), routes: freeAddrs(tb, n), cmds: make([]*exec.Cmd, n)}
	for i := range n {
		s.names = append(s.names, fmt.Sprintf("b%d", i))
		dir, err := os.MkdirTemp("", "ctest-server-")
		if err != nil {
			s.stop()
			tb.Fatal(err)
		}
		s.dirs = append(s.dirs, dir)
	}
	for i := range n {
		s.start(i)
	}
	s.waitJetStream(60 * time.Second)
	return s
}

// start starts server i and waits for its "ready".
func (s *serverProcs) start(i int) {
	s.tb.Helper()
	cmd := mptest.HelperCmd(s.tb, "ctest.server", s.names[i], s.clients[i], s.routes[i], strings.Join(s.routes, ","), s.dirs[i])
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.stop()
		s.tb.Fatal(err)
	}
	s.cmds[i] = cmd
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		s.tb.Fatalf("server %s did not start: %q, %v", s.names[i], line, err)
	}
}

// kill SIGKILLs server i.
func (s *serverProcs) kill(i int) {
	s.cmds[i].Process.Kill()
	s.cmds[i].Wait()
	s.cmds[i] = nil
}

func (s *serverProcs) stop() {
	for _, c := range s.cmds {
		if c != nil {
			c.Process.Signal(syscall.SIGTERM)
		}
	}
	for i, c := range s.cmds {
		if c != nil {
			c.Wait()
			s.cmds[i] = nil
		}
	}
	for _, d := range s.dirs {
		os.RemoveAll(d)
	}
}

// url is every server's client URL, comma-separated.
func (s *serverProcs) url() string {
	var u []string
	for _, c := range s.clients {
		u = append(u, "nats://"+c)
	}
	return strings.Join(u, ",")
}

// waitJetStream waits until JetStream answers through every live server.
func (s *serverProcs) waitJetStream(d time.Duration) {
	s.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for i, c := range s.clients {
		if s.cmds[i] == nil {
			continue
		}
		nc, err := nats.Connect("nats://"+c, nats.DontRandomize())
		if err != nil {
			s.tb.Fatal(err)
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
				s.tb.Fatalf("JetStream never became available through %s: %v", c, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		nc.Close()
	}
}

// index returns the index of the server named name, or -1.
func (s *serverProcs) index(name string) int {
	for i, n := range s.names {
		if n == name {
			return i
		}
	}
	return -1
}

// waitStreamHealthy waits until stream has a leader and every replica
// is current.
func waitStreamHealthy(tb testing.TB, js jetstream.JetStream, stream string, replicas int, d time.Duration) string {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := js.Stream(ctx, stream)
		cancel()
		if err == nil {
			ci := st.CachedInfo().Cluster
			current := 0
			if ci != nil && ci.Leader != "" {
				current = 1
				for _, r := range ci.Replicas {
					if r.Current && !r.Offline {
						current++
					}
				}
			}
			if current >= replicas {
				return ci.Leader
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("stream %s not healthy after %v: %v", stream, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// benchFailover measures, on three server processes, the time from the
// SIGKILL of the task stream's leader to the completion of the next task
// submitted after it (an Apply started at the kill and retried until it
// completes): the election of a new leader, the clients' reconnection
// and one round trip. The killed server is started again (its store
// kept) and the stream caught up before the next iteration.
func benchFailover(b *testing.B, s *serverProcs, p *Pool) {
	s.tb = b
	ctx := context.Background()
	nc, err := nats.Connect(s.url())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		leader := waitStreamHealthy(b, js, streamName, 3, 60*time.Second)
		if _, err := square.Apply(ctx, p, 2); err != nil {
			b.Fatal(err)
		}
		i := s.index(leader)
		if i < 0 {
			b.Fatalf("the stream's leader %q is none of the servers", leader)
		}
		b.StartTimer()
		t0 := time.Now()
		s.kill(i)
		logged := false
		for {
			actx, cancel := context.WithTimeout(ctx, 30*time.Second)
			v, err := square.Apply(actx, p, 7)
			cancel()
			if err == nil && v == 49 {
				break
			}
			switch {
			case time.Since(t0) > 3*time.Minute:
				b.Fatalf("no task completed within 3 minutes of the leader's kill: %v\n%s", err, clusterDiag(js, p))
			case time.Since(t0) > time.Minute && !logged:
				logged = true
				b.Logf("no task completed within a minute of the leader's kill: %v\n%s", err, clusterDiag(js, p))
			}
		}
		total += time.Since(t0)
		b.StopTimer()
		if testing.Verbose() {
			b.Logf("leader %s killed; the next task completed %v later", leader, time.Since(t0).Round(time.Millisecond))
		}
		s.start(i)
		s.waitJetStream(60 * time.Second)
		b.StartTimer()
	}
	b.StopTimer()
	waitStreamHealthy(b, js, streamName, 3, 60*time.Second)
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms")
}

// clusterDiag describes the task stream, the agents' consumer and the
// pool's view, for a benchmark or test that failed waiting.
func clusterDiag(js jetstream.JetStream, p *Pool) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := fmt.Sprintf("pool: %d workers, stats %+v, agents %+v\n", p.Workers(), p.Stats(), p.Agents())
	if st, err := js.Stream(ctx, streamName); err != nil {
		out += fmt.Sprintf("stream: %v\n", err)
	} else {
		i := st.CachedInfo()
		out += fmt.Sprintf("stream: %d msgs, cluster %+v\n", i.State.Msgs, i.Cluster)
		if c, err := st.Consumer(ctx, consumerName(p.ns)); err != nil {
			out += fmt.Sprintf("consumer: %v\n", err)
		} else {
			ci := c.CachedInfo()
			out += fmt.Sprintf("consumer: pending %d, ack pending %d, waiting %d, redelivered %d, cluster %+v\n",
				ci.NumPending, ci.NumAckPending, ci.NumWaiting, ci.NumRedelivered, ci.Cluster)
		}
	}
	return out
}
