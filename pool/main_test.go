// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/process"
)

func TestMain(m *testing.M) {
	process.Init()
	mptest.Main(m)
}

// Tasks the tests run; registered at package level so that workers (the
// re-executed test binary) have them too.
var (
	square = pool.Register("test.square", func(ctx context.Context, x int) (int, error) { return x * x, nil })
	pid    = pool.Register("test.pid", func(ctx context.Context, _ int) (int, error) { return os.Getpid(), nil })
	fail   = pool.Register("test.fail", func(ctx context.Context, x int) (int, error) {
		if x%10 == 3 {
			return 0, fmt.Errorf("task %d: %w", x, errBoom)
		}
		return x, nil
	})
	panicky = pool.Register("test.panic", func(ctx context.Context, msg string) (string, error) {
		panicInTask(msg)
		return "", nil
	})
	// sleep sleeps for d or until its context ends.
	sleep = pool.Register("test.sleep", func(ctx context.Context, d time.Duration) (int, error) {
		select {
		case <-time.After(d):
			return os.Getpid(), nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	// held says it runs by creating path+".running", then waits until
	// path exists or its context ends: a task the test holds and
	// releases, with no timing in it.
	held = pool.Register("test.held", func(ctx context.Context, path string) (int, error) {
		return os.Getpid(), mptest.Hold(ctx, path)
	})
	// stubborn ignores its context.
	stubborn = pool.Register("test.stubborn", func(ctx context.Context, d time.Duration) (int, error) {
		time.Sleep(d)
		return os.Getpid(), nil
	})
	// suicide kills its own worker when x is negative.
	suicide = pool.Register("test.suicide", func(ctx context.Context, x int) (int, error) {
		if x < 0 {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return x, nil
	})
	// unencodable returns a value gob cannot encode for odd x.
	unencodable = pool.Register("test.unencodable", func(ctx context.Context, x int) (any, error) {
		if x%2 == 1 {
			return func() {}, nil
		}
		return x, nil
	})
	concat = pool.Register2("test.concat", func(ctx context.Context, a string, n int) (string, error) {
		return strings.Repeat(a, n), nil
	})
	// grow allocates mb MiB and keeps them, returning its pid.
	grow = pool.Register("test.grow", func(ctx context.Context, mb int) (int, error) {
		b := make([]byte, mb<<20)
		for i := range b {
			b[i] = 1
		}
		hoard = append(hoard, b)
		return os.Getpid(), nil
	})
	// initMark records that the initializer ran in this worker.
	initMark = pool.Register("test.initmark", func(ctx context.Context, v string) (struct{}, error) {
		if v == "fail" {
			return struct{}{}, errors.New("initializer refuses")
		}
		initValue = v
		initRuns++
		return struct{}{}, nil
	})
	gomaxprocs = pool.Register("test.gomaxprocs", func(ctx context.Context, _ int) (int, error) {
		return runtime.GOMAXPROCS(0), nil
	})
	anyArg   = pool.Register("test.anyarg", func(ctx context.Context, v any) (int, error) { return 1, nil })
	readInit = pool.Register("test.readinit", func(ctx context.Context, _ int) (string, error) {
		return fmt.Sprintf("%s:%d:%d", initValue, initRuns, os.Getpid()), nil
	})
)

var (
	errBoom   = errors.New("boom")
	hoard     [][]byte
	initValue string
	initRuns  int
)

func panicInTask(msg string) { panic(msg) }

func newPool(t testing.TB, opts ...pool.Option) *pool.Pool {
	t.Helper()
	p, err := pool.New(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Terminate() })
	return p
}

func ints(n int) []int {
	v := make([]int, n)
	for i := range v {
		v[i] = i
	}
	return v
}

func TestSmoke(t *testing.T) {
	p := newPool(t, pool.Workers(2))
	got, err := square.Map(context.Background(), p, ints(1000))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != i*i {
			t.Fatalf("got[%d] = %d", i, v)
		}
	}
	r, err := square.Apply(context.Background(), p, 7)
	if err != nil || r != 49 {
		t.Fatalf("Apply = %d, %v", r, err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}
