// SPDX-License-Identifier: Apache-2.0

package processtest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/process/starter"
	commonpb "github.com/multiproc/multiproc/proto/common/v1"
)

// Wrong arguments fail Start in the parent, before the Starter is asked
// for anything, and leave nothing behind.
func testBadArgs(t *testing.T, e *env) {
	_, b := pipe(t)
	tests := []struct {
		name string
		p    *process.Process
		want error
	}{
		{"too few", fnExit.Process(), process.ErrBadArgs},
		{"too many", fnExit.Process(1, 2), process.ErrBadArgs},
		{"wrong type", fnExit.Process("1"), process.ErrBadArgs},
		{"nil", fnFail.Process(nil), process.ErrBadArgs},
		{"nil handle", fnEcho.Process((*ipc.Conn)(nil)), process.ErrBadArgs},
		{"value for handle", fnEcho.Process(42), process.ErrBadArgs},
		{"handle for value", fnExit.Process(b), process.ErrBadArgs},
	}
	for _, tt := range tests {
		tt.p.Starter = e.s
		if err := tt.p.Start(ctxT(t)); !errors.Is(err, tt.want) {
			t.Errorf("%s: Start: %v, want %v", tt.name, err, tt.want)
		}
	}
	// A value the codec cannot encode fails in the parent, at Start.
	p := fnBadCodec.Process(unexported{1})
	p.Starter = e.s
	if err := p.Start(ctxT(t)); err == nil || !strings.Contains(err.Error(), "argument 0") {
		t.Fatalf("unencodable argument: %v", err)
	}
	// A closed Conn cannot be handed over.
	c, _ := pipe(t)
	c.Close()
	p = fnEcho.Process(c)
	p.Starter = e.s
	if err := p.Start(ctxT(t)); !errors.Is(err, ipc.ErrClosed) {
		t.Fatalf("closed Conn: %v", err)
	}
}

// mangler is a Starter that corrupts the bootstrap message, then lets the
// Starter under test start the child.
type mangler struct {
	process.Starter
	f func([]byte) []byte
}

func (m mangler) Start(ctx context.Context, req *starter.Request) (starter.Child, error) {
	r := *req
	r.Bootstrap = m.f(slices.Clone(req.Bootstrap))
	return m.Starter.Start(ctx, &r)
}

// A child that cannot start says so: a bad bootstrap message, a function
// its binary does not know.
func testStartupErrors(t *testing.T, e *env) {
	tests := []struct {
		name   string
		mangle func([]byte) []byte
		want   string
	}{
		{"garbage", func([]byte) []byte { return []byte("\xff\xff\xff not protobuf") }, "bad bootstrap message"},
		{"unknown function", func(b []byte) []byte {
			// the same length, so that the message stays well formed
			return bytes.Replace(b, []byte("processtest.empty"), []byte("processtest.nope!"), 1)
		}, `"processtest.nope!" is not registered`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &process.Process{Func: fnEmpty}
			p.Starter = mangler{e.s, tt.mangle}
			if err := p.Start(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			err := p.Wait()
			var ee *process.ExitError
			if !errors.As(err, &ee) || !errors.Is(err, process.ErrStartup) || !strings.Contains(ee.Message, tt.want) {
				t.Fatalf("Wait: %v, want a startup error containing %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "failed to start") || ee.Code != 1 {
				t.Fatalf("Error() = %q, code %d", err, ee.Code)
			}
		})
	}
}

// Plain arguments are encoded by ipc.DefaultCodec: []byte raw, protobuf
// messages in wire format, everything else with gob.
func testArgumentEncodings(t *testing.T, e *env) {
	a, b := pipe(t)
	want := argReport{
		Raw:   []byte{0, 1, 2, 255},
		Proto: "msg/stack",
		Point: point{X: 1, Y: -2, Tags: map[string]string{"k": "v"}},
		Ptr:   &point{X: 3},
		Str:   "héllo",
		Slice: []int{5, 6, 7},
	}
	p := e.start(t, fnArgs.Process(b, want.Raw, &commonpb.RemoteError{Message: "msg", Stack: "stack"}, want.Point, want.Ptr, want.Str, want.Slice))
	b.Close()
	var got argReport
	recv(t, a, &got)
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if string(got.Raw) != string(want.Raw) || got.Proto != want.Proto || got.Point.X != 1 || got.Point.Y != -2 || got.Point.Tags["k"] != "v" ||
		got.Ptr == nil || got.Ptr.X != 3 || got.Str != want.Str || len(got.Slice) != 3 || got.Slice[2] != 7 {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// Conns travel to the child: a duplex pipe end to talk over, a simplex
// pipe's write end, a socketpair end; the parent sees EOF once the child
// is gone.
func testPassConn(t *testing.T, e *env) {
	ctx := ctxT(t)
	a, b := pipe(t)
	p := e.start(t, fnEcho.Process(b))
	b.Close() // the child has its own copy
	for _, m := range []string{"ping", "", strings.Repeat("x", 1<<20)} {
		if err := a.SendBytes(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
		got, err := a.RecvBytes(ctx)
		if err != nil || string(got) != "echo:"+m {
			t.Fatalf("echo of %d bytes: got %d bytes, %v", len(m), len(got), err)
		}
	}
	a.Close() // EOF ends the child
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}

	for _, opts := range [][]ipc.Option{nil, {ipc.Socketpair()}} {
		r, w, err := ipc.Pipe(false, opts...)
		if err != nil {
			t.Fatal(err)
		}
		p := e.start(t, fnSendTo.Process(w, []byte("hello from a child")))
		w.Close()
		got, err := r.RecvBytes(ctx)
		if err != nil || string(got) != "hello from a child" {
			t.Fatalf("got %q, %v", got, err)
		}
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.RecvBytes(ctx); err == nil {
			t.Fatal("no EOF after the child exited")
		}
		r.Close()
	}
}

// A 16 MiB argument arrives whole.
func testLargeArgument(t *testing.T, e *env) {
	big := make([]byte, 16<<20)
	sum := 0
	for i := range big {
		big[i] = byte(i * 7)
		sum += int(big[i])
	}
	a, b := pipe(t)
	p := e.start(t, fnSum.Process(big, b))
	b.Close()
	var got [2]int
	recv(t, a, &got)
	if got != [2]int{len(big), sum} {
		t.Fatalf("child saw %v, want %v", got, [2]int{len(big), sum})
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A child with manyConns Conns (over 250 files) gets each, in order.
func testManyHandles(t *testing.T, e *env) {
	ctx := ctxT(t)
	readers := make([]*ipc.Conn, manyConns)
	args := make([]any, manyConns)
	for i := range manyConns {
		r, w := pipe(t)
		readers[i], args[i] = r, w
	}
	p := e.start(t, fnMany.Process(args...))
	for _, a := range args {
		a.(*ipc.Conn).Close()
	}
	for i, r := range readers {
		var got int
		if err := r.Recv(ctx, &got); err != nil || got != i {
			t.Fatalf("connection %d: got %d, %v", i, got, err)
		}
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}
