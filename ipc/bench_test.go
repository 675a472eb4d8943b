// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"strconv"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
)

type tuple struct {
	N int
	S string
	F float64
}

// echoTuple decodes every frame as a tuple and sends it back re-encoded,
// as CPython's pipe.rtt.tuple peer unpickles and pickles.
var _ = mptest.RegisterHelper("echo-tuple", func() {
	conns, _ := childConns()
	c := conns[0]
	ctx := context.Background()
	for {
		var v tuple
		if err := c.Recv(ctx, &v); err != nil {
			return
		}
		if err := c.Send(ctx, v); err != nil {
			fail(err)
		}
	}
})

// BenchmarkKit measures the baseline kit's pipe.* keys between this
// process and a child process (see ../shared/bench).
func BenchmarkKit(b *testing.B) {
	b.Run("pipe.rtt.bytes16", func(b *testing.B) {
		ctx := context.Background()
		a, peer := mustPipe(b, true)
		cmd := startChild(b, "echo", nil, peer)
		defer waitChild(b, cmd)
		defer a.Close()
		msg := []byte("0123456789abcdef")
		buf := make([]byte, 64)
		// Warm up: the child is running and has answered once.
		a.SendBytes(ctx, msg)
		a.RecvBytesInto(ctx, buf)
		b.ReportAllocs()
		for b.Loop() {
			if err := a.SendBytes(ctx, msg); err != nil {
				b.Fatal(err)
			}
			if _, err := a.RecvBytesInto(ctx, buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "us")
	})
	b.Run("pipe.rtt.tuple", func(b *testing.B) {
		ctx := context.Background()
		a, peer := mustPipe(b, true)
		cmd := startChild(b, "echo-tuple", nil, peer)
		defer waitChild(b, cmd)
		defer a.Close()
		v := tuple{42, "ping", 3.5}
		var got tuple
		a.Send(ctx, v)
		a.Recv(ctx, &got)
		b.ReportAllocs()
		for b.Loop() {
			if err := a.Send(ctx, v); err != nil {
				b.Fatal(err)
			}
			if err := a.Recv(ctx, &got); err != nil {
				b.Fatal(err)
			}
		}
		if got != v {
			b.Fatalf("echoed %+v", got)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "us")
	})
	tput := func(size int, duplex bool, opts ...Option) func(b *testing.B) {
		return func(b *testing.B) {
			ctx := context.Background()
			var data, sinkData, acks, sinkAcks *Conn
			if duplex {
				data, sinkData = mustPipe(b, true, opts...)
				acks, sinkAcks = data, sinkData
			} else {
				sinkData, data = mustPipe(b, false, opts...)
				acks, sinkAcks = mustPipe(b, true)
			}
			cmd := startChild(b, "sink", nil, sinkData, sinkAcks)
			defer waitChild(b, cmd)
			defer data.Close()
			defer acks.Close()
			msg := make([]byte, size)
			ack := func() int {
				if err := data.SendBytes(ctx, nil); err != nil {
					b.Fatal(err)
				}
				m, err := acks.RecvBytes(ctx)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := strconv.Atoi(string(m))
				return n
			}
			data.SendBytes(ctx, msg)
			base := ack()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := data.SendBytes(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
			if got := ack() - base; got != b.N*size {
				b.Fatalf("sink read %d bytes, want %d", got, b.N*size)
			}
			b.ReportMetric(float64(b.N)*float64(size)/b.Elapsed().Seconds()/1e9, "GB/s")
		}
	}
	b.Run("pipe.tput.1MiB", tput(1<<20, true, Socketpair()))
	b.Run("pipe.tput.1MiB.simplex", tput(1<<20, false))
	b.Run("pipe.tput.64MiB", tput(64<<20, true, Socketpair()))
}
