// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The responder of BenchmarkFloorOtherProcess: a plain nats.go pull
// consumer in its own process, answering and acknowledging each message.
var _ = mptest.RegisterHelper("js-responder", func() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	sub, err := nats.Connect(mptest.HelperArgs()[0])
	if err != nil {
		os.Exit(1)
	}
	rjs, _ := jetstream.New(sub)
	name := mptest.HelperArgs()[1]
	cons, err := rjs.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{Durable: "r", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1 << 16})
	if err != nil {
		os.Exit(2)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		sub.Publish("bench.answer."+name, m.Data())
		m.Ack()
	}, jetstream.PullMaxMessages(512))
	if err != nil {
		os.Exit(3)
	}
	<-ctx.Done()
	cc.Stop()
	sub.Close()
})

// BenchmarkFloorOtherProcess is jetstream.rtt with its responder in
// another process, as an agent is: one 8-byte message published on the
// embedded server, pulled, acknowledged and answered by a plain nats.go
// consumer in a child process. The kit's jetstream.rtt has its responder
// in the benchmark's own process, so it pays no process wake-up; this one
// shows what crossing a process adds (docs/performance.md, "The cluster
// pool").
func BenchmarkFloorOtherProcess(b *testing.B) {
	ctx := context.Background()
	p, err := New(ctx, Agents(0))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	pub, err := nats.Connect(p.URL(), nats.InProcessServer(p.emb.srv))
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	js, err := jetstream.New(pub)
	if err != nil {
		b.Fatal(err)
	}
	name := "BENCH_proc"
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"bench." + name}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		b.Fatal(err)
	}
	answers := make(chan struct{}, 1<<17)
	s, err := pub.Subscribe("bench.answer."+name, func(*nats.Msg) { answers <- struct{}{} })
	if err != nil {
		b.Fatal(err)
	}
	defer s.Unsubscribe()
	pub.Flush()
	cmd := mptest.HelperCmd(b, "js-responder", p.URL(), name)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	// The first answer says the responder is ready.
	js.PublishAsync("bench."+name, []byte("12345678"))
	select {
	case <-answers:
	case <-time.After(30 * time.Second):
		b.Fatal("the responder process did not answer")
	}
	var total time.Duration
	for b.Loop() {
		t0 := time.Now()
		js.PublishAsync("bench."+name, []byte("12345678"))
		<-answers
		total += time.Since(t0)
	}
	b.ReportMetric(float64(total.Nanoseconds())/1000/float64(b.N), "us")
}
