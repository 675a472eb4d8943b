package process_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
	commonpb "github.com/multiproc/multiproc/proto/common/v1"
)

type point struct {
	X, Y int
	Tags map[string]string
}

type argReport struct {
	Raw   []byte
	Proto string
	Point point
	Ptr   *point
	Str   string
	Slice []int
}

var (
	fnArgs = process.Register("test.args", func(ctx context.Context, c *ipc.Conn, raw []byte, m *commonpb.RemoteError, p point, pp *point, s string, xs []int) error {
		defer c.Close()
		return c.Send(ctx, argReport{Raw: raw, Proto: m.GetMessage() + "/" + m.GetStack(), Point: p, Ptr: pp, Str: s, Slice: xs})
	})
	fnDaemonParent = process.Register("test.daemonparent", func(ctx context.Context) error {
		return fnEmpty.Process().Start(ctx)
	})
)

// Plain arguments are encoded by ipc.DefaultCodec: []byte raw, protobuf
// messages in wire format, everything else with gob.
func TestArgumentEncodings(t *testing.T) {
	leakChecks(t)
	a, b := pipe(t)
	want := argReport{
		Raw:   []byte{0, 1, 2, 255},
		Proto: "msg/stack",
		Point: point{X: 1, Y: -2, Tags: map[string]string{"k": "v"}},
		Ptr:   &point{X: 3},
		Str:   "héllo",
		Slice: []int{5, 6, 7},
	}
	p := start(t, fnArgs.Process(b, want.Raw, &commonpb.RemoteError{Message: "msg", Stack: "stack"}, want.Point, want.Ptr, want.Str, want.Slice))
	b.Close()
	var got argReport
	waitReady(t, a, &got)
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if string(got.Raw) != string(want.Raw) || got.Proto != want.Proto || got.Point.X != 1 || got.Point.Tags["k"] != "v" ||
		got.Ptr == nil || got.Ptr.X != 3 || got.Str != want.Str || len(got.Slice) != 3 || got.Slice[2] != 7 {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// A daemonic process may not have children (as in Python).
func TestDaemonNoChildren(t *testing.T) {
	leakChecks(t)
	p := start(t, &process.Process{Func: fnDaemonParent, Daemon: true})
	err := p.Wait()
	var ee *process.ExitError
	if !errors.As(err, &ee) || !strings.Contains(ee.Message, "daemonic processes are not allowed to have children") {
		t.Fatalf("Wait: %v", err)
	}
}

// Join, Alive and ExitCode from many goroutines at once, while the child
// is terminated: everyone sees the same end.
func TestConcurrentJoin(t *testing.T) {
	leakChecks(t)
	p := start(t, fnBlock.Process())
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			if i%2 == 0 {
				errs[i] = p.Join(ctxT(t))
				return
			}
			for p.Alive() {
				if err := p.Join(ctxT(t)); err != nil {
					errs[i] = err
					return
				}
			}
			errs[i] = p.Join(ctxT(t))
		})
	}
	p.Terminate()
	wg.Wait()
	for i, err := range errs {
		var ee *process.ExitError
		if !errors.As(err, &ee) || ee.Code != -15 {
			t.Fatalf("goroutine %d: %v", i, err)
		}
	}
	if code, ok := p.ExitCode(); !ok || code != -15 {
		t.Fatalf("ExitCode %d %v", code, ok)
	}
}
