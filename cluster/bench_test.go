// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/pool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkKit reports the cluster.* keys (`mp bench` runs every
// BenchmarkKit) with two local agents of one worker each, like the local
// pool's pool.* keys with two workers, and the floors: plain nats.go
// against the same embedded server (jetstream.rtt, jetstream.tput). The
// keys ending in .three are the same on a NATS cluster of three servers,
// each its own process on this machine, the stream and the status bucket
// with 3 replicas; cluster.failover is the time from the SIGKILL of the
// server leading the task stream to the next task completed.
func BenchmarkKit(b *testing.B) {
	ctx := context.Background()
	const n = 100_000
	in := ints(n)
	var shared *Pool
	cp := func(b *testing.B) *Pool {
		if shared == nil {
			var err error
			shared, err = New(ctx, Agents(2))
			if err != nil {
				b.Fatal(err)
			}
		}
		return shared
	}
	defer func() {
		if shared != nil {
			shared.Close()
		}
	}()
	var three *Pool
	var servers *serverProcs
	cp3 := func(b *testing.B) *Pool {
		if three == nil {
			servers = startServerProcs(b, 3)
			nctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			var err error
			three, err = New(nctx, URL(servers.url()), Agents(2))
			if err != nil {
				b.Fatal(err)
			}
			if three.o.replicas != 3 {
				b.Fatalf("the stream on three servers has %d replicas, want 3", three.o.replicas)
			}
		}
		servers.tb = b
		return three
	}
	defer func() {
		if three != nil {
			three.Close()
		}
		if servers != nil {
			servers.stop()
		}
	}()
	for _, pc := range []struct {
		suffix string
		get    func(*testing.B) *Pool
	}{{"", cp}, {".three", cp3}} {
		cp := pc.get
		mapKey := func(name string, opts ...pool.MapOption) {
			b.Run(name+pc.suffix, func(b *testing.B) {
				p := cp(b)
				b.ReportAllocs()
				var total time.Duration
				for b.Loop() {
					t0 := time.Now()
					if _, err := square.Map(ctx, p, in, opts...); err != nil {
						b.Fatal(err)
					}
					total += time.Since(t0)
				}
				b.ReportMetric(float64(n*b.N)/total.Seconds(), "tasks/s")
			})
		}
		mapKey("cluster.map.default")
		mapKey("cluster.map.chunk1", pool.Chunksize(1))
		b.Run("cluster.apply.rtt"+pc.suffix, func(b *testing.B) {
			p := cp(b)
			b.ReportAllocs()
			var total time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := square.Apply(ctx, p, 3); err != nil {
					b.Fatal(err)
				}
				total += time.Since(t0)
			}
			b.ReportMetric(float64(total.Nanoseconds())/1000/float64(b.N), "us")
		})
		if pc.suffix == "" {
			b.Run("cluster.map.big", func(b *testing.B) { benchBig(b, cp(b)) })
			b.Run("cluster.recover", benchRecover)
		}
		b.Run("jetstream.rtt"+pc.suffix, func(b *testing.B) { benchJetStream(b, cp(b), false) })
		b.Run("jetstream.tput"+pc.suffix, func(b *testing.B) { benchJetStream(b, cp(b), true) })
	}
	// Last: it kills servers (and starts them again).
	b.Run("cluster.failover", func(b *testing.B) {
		p := cp3(b) // starts the servers
		benchFailover(b, servers, p)
	})
}

// benchRecover measures, from an agent's SIGKILL, how long until the
// chunk it held completes on another agent: the ack wait (1s here) plus
// the task run again (600ms).
func benchRecover(b *testing.B) {
	ctx := context.Background()
	p, err := New(ctx, Agents(0), AckWait(time.Second))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	start := func() *exec.Cmd {
		cmd := envAgentCmd(b, p.URL(), "1")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		return cmd
	}
	agents := map[int]*exec.Cmd{}
	for range 2 {
		c := start()
		agents[c.Process.Pid] = c
	}
	defer func() {
		for _, c := range agents {
			c.Process.Signal(syscall.SIGTERM)
			c.Wait()
		}
	}()
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		for p.capacity() < 2 {
			time.Sleep(10 * time.Millisecond)
		}
		f := slow.Submit(ctx, p, 600*time.Millisecond)
		// Wait for the holder's claim, then kill it.
		var holder int
		for holder == 0 {
			time.Sleep(5 * time.Millisecond)
			p.mu.Lock()
			for _, s := range p.chunks {
				for _, a := range p.agents {
					if a.info.ID == s.claimant {
						holder = a.info.Pid
					}
				}
			}
			p.mu.Unlock()
		}
		b.StartTimer()
		t0 := time.Now()
		agents[holder].Process.Kill()
		if _, err := f.Get(ctx); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		b.StopTimer()
		agents[holder].Wait()
		delete(agents, holder)
		p.mu.Lock()
		for k, a := range p.agents {
			if a.info.Pid == holder {
				delete(p.agents, k)
			}
		}
		p.mu.Unlock()
		c := start()
		agents[c.Process.Pid] = c
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms")
}

// benchJetStream is the floor: plain nats.go against the same server, one
// message published, pulled, acknowledged and answered (rtt), or a
// stream of 100k of them (tput).
func benchJetStream(b *testing.B, p *Pool, tput bool) {
	ctx := context.Background()
	// The publisher is in process with an embedded server, as the pool's
	// caller is; on a cluster of servers, over TCP.
	var popts []nats.Option
	replicas := 1
	if p.emb != nil {
		popts = append(popts, nats.InProcessServer(p.emb.srv))
	} else {
		replicas = p.o.replicas
	}
	pub, err := nats.Connect(p.URL(), popts...)
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	sub, err := nats.Connect(p.URL()) // the responder, over TCP as agents are
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	js, _ := jetstream.New(pub)
	rjs, _ := jetstream.New(sub)
	name := "BENCH_" + strconv.FormatBool(tput)
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"bench." + name},
		Retention: jetstream.WorkQueuePolicy, Replicas: replicas}); err != nil {
		b.Fatal(err)
	}
	defer js.DeleteStream(ctx, name)
	cons, err := rjs.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{Durable: "r", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		sub.Publish("bench.answer."+name, m.Data())
		m.Ack()
	}, jetstream.PullMaxMessages(512))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	answers := make(chan struct{}, 1<<17)
	var got atomic.Int64
	s, err := pub.Subscribe("bench.answer."+name, func(*nats.Msg) {
		got.Add(1)
		answers <- struct{}{}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Unsubscribe()
	pub.Flush()
	data := []byte("12345678")
	const n = 100_000
	var total time.Duration
	for b.Loop() {
		t0 := time.Now()
		if tput {
			go func() {
				for range n {
					// A publish refused while too many await their
					// acknowledgement (a loaded machine) is retried: a
					// message dropped here would leave the loop below
					// waiting forever.
					for {
						if _, err := js.PublishAsync("bench."+name, data); err == nil {
							break
						}
						select {
						case <-js.PublishAsyncComplete():
						case <-time.After(10 * time.Millisecond):
						}
					}
				}
			}()
			for range n {
				<-answers
			}
		} else {
			js.PublishAsync("bench."+name, data)
			<-answers
		}
		total += time.Since(t0)
	}
	if tput {
		// One message answered is the floor of one chunk1 task.
		b.ReportMetric(float64(n*b.N)/total.Seconds(), "tasks/s")
	} else {
		b.ReportMetric(float64(total.Nanoseconds())/1000/float64(b.N), "us")
	}
}

var bigEcho = pool.Register("ctest.bigecho", func(ctx context.Context, b []byte) ([]byte, error) { return b, nil })

// benchBig is cluster.map.big: 8 tasks of 8 MiB []byte echoed, chunksize
// 1, through the Object Store both ways (the server's max_payload is the
// default 1 MiB), in GB/s of arguments like pool.map.big.echo.
func benchBig(b *testing.B, p *Pool) {
	ctx := context.Background()
	const tasks, size = 8, 8 << 20
	in := bigInputs(tasks, size, 0)
	var total time.Duration
	for b.Loop() {
		t0 := time.Now()
		out, err := bigEcho.Map(ctx, p, in, pool.Chunksize(1))
		if err != nil || len(out) != tasks || len(out[tasks-1]) != size {
			b.Fatal(err)
		}
		total += time.Since(t0)
	}
	b.ReportMetric(float64(tasks*size*b.N)/total.Seconds()/1e9, "GB/s")
}
