// SPDX-License-Identifier: Apache-2.0

package pickle_test

import (
	"context"
	"encoding/hex"
	"os"
	"strconv"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/pickle"
)

// echoPickle receives pickles on the Conn handed to it and sends each
// value back re-encoded, as CPython's `c.send(c.recv())` does.
var _ = mptest.RegisterHelper("echo-pickle", func() {
	args := mptest.HelperArgs()
	n, _ := strconv.Atoi(args[0])
	desc, _ := hex.DecodeString(args[1])
	var files []*os.File
	for i := range n {
		files = append(files, os.NewFile(uintptr(3+i), "inherited"))
	}
	c, err := ipc.ConnFromHandle(files, desc, ipc.UseCodec(pickle.New()))
	if err != nil {
		os.Exit(3)
	}
	ctx := context.Background()
	for {
		var v any
		if err := c.Recv(ctx, &v); err != nil {
			return
		}
		if err := c.Send(ctx, v); err != nil {
			os.Exit(4)
		}
	}
})

type smallTuple struct {
	N int
	S string
	F float64
}

// BenchmarkKit measures the kit's pipe.pickle.rtt key: a small tuple
// (42, "ping", 3.5) pickled, sent through a duplex Pipe to a child
// process that unpickles and re-pickles it, and decoded back into a
// struct. CPython's pipe round trip is the comparison.
func BenchmarkKit(b *testing.B) {
	b.Run("pipe.pickle.rtt", func(b *testing.B) {
		ctx := context.Background()
		a, peer, err := ipc.Pipe(true, ipc.UseCodec(pickle.New()))
		if err != nil {
			b.Fatal(err)
		}
		defer a.Close()
		files, desc, err := peer.MultiprocHandle()
		if err != nil {
			b.Fatal(err)
		}
		cmd := mptest.HelperCmd(b, "echo-pickle", strconv.Itoa(len(files)), hex.EncodeToString(desc))
		cmd.ExtraFiles = files
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for _, f := range files {
			f.Close()
		}
		peer.Close()
		defer cmd.Wait()
		defer a.Close()
		v := pickle.Tuple{42, "ping", 3.5}
		var got smallTuple
		if err := a.Send(ctx, v); err != nil {
			b.Fatal(err)
		}
		if err := a.Recv(ctx, &got); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := a.Send(ctx, v); err != nil {
				b.Fatal(err)
			}
			if err := a.Recv(ctx, &got); err != nil {
				b.Fatal(err)
			}
		}
		if got != (smallTuple{42, "ping", 3.5}) {
			b.Fatalf("echoed %+v", got)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "us")
	})
}

// Marshal and Unmarshal alone, without the pipe.
func BenchmarkCodec(b *testing.B) {
	c := pickle.New()
	v := pickle.Tuple{42, "ping", 3.5}
	data, _ := c.Marshal(v)
	b.Run("marshal.tuple", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Marshal(v)
		}
	})
	b.Run("unmarshal.tuple", func(b *testing.B) {
		b.ReportAllocs()
		var got smallTuple
		for b.Loop() {
			c.Unmarshal(data, &got)
		}
	})
}
