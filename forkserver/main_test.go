// SPDX-License-Identifier: Apache-2.0

package forkserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
)

// A warm process started with FS_TEST_INIT_EXIT set exits during package
// initialisation, before it can report ready (as a binary whose main
// never reaches process.Init would).
func init() {
	if code := os.Getenv("FS_TEST_INIT_EXIT"); code != "" {
		n, _ := strconv.Atoi(code)
		os.Exit(n)
	}
}

func TestMain(m *testing.M) {
	process.Init()
	mptest.Main(m)
}

// What a child reports about itself.
type report struct {
	Pid, Ppid   int
	ParentPid   int
	ParentAlive bool
	Method      string
	Name        string
	Daemon      bool
	N           int
	S           string
	Env         string
}

var (
	fnEmpty = process.Register("fs.empty", func(ctx context.Context) {})
	fnExit  = process.Register("fs.exit", func(ctx context.Context, code int) error {
		return process.Exit(code)
	})
	// fnReport sends what it knows on c.
	fnReport = process.Register("fs.report", func(ctx context.Context, n int, s string, c *ipc.Conn) error {
		defer c.Close()
		cur := process.Current()
		return c.Send(ctx, report{
			Pid: os.Getpid(), Ppid: os.Getppid(),
			ParentPid: process.Parent().Pid, ParentAlive: process.Parent().Alive(),
			Method: cur.StartMethod, Name: cur.Name, Daemon: cur.Daemon,
			N: n, S: s, Env: os.Getenv("FS_TEST_VAR"),
		})
	})
	// fnHello writes a line on its stdout.
	fnHello = process.Register("fs.hello", func(ctx context.Context) error {
		_, err := fmt.Fprintln(os.Stdout, "hello from", os.Getpid())
		return err
	})
	// fnGrandchildren starts a grandchild with Spawn and one through a
	// forkserver of its own, and reports their start methods and exit
	// codes.
	fnGrandchildren = process.Register("fs.grandchildren", func(ctx context.Context, c *ipc.Conn) error {
		defer c.Close()
		fs, err := New(Size(1))
		if err != nil {
			return err
		}
		defer fs.Close()
		var got []string
		for _, st := range []process.Starter{nil, fs} {
			p := fnExitRef().Process(4)
			p.Starter = st
			if err := p.Start(ctx); err != nil {
				return err
			}
			p.Join(ctx)
			code, _ := p.ExitCode()
			got = append(got, fmt.Sprintf("%s:%d", p.StartMethodName(), code))
			p.Close()
		}
		return c.Send(ctx, got)
	})
)

func fnExitRef() *process.Func { return fnExit }

// Helpers: programs that use a forkserver and end, for the leak tests.
var (
	// helperExit runs one child through a forkserver and exits without
	// closing it.
	_ = mptest.RegisterHelper("fs.exit", func() {
		ctx := context.Background()
		s, err := New(Size(3))
		if err != nil {
			panic(err)
		}
		p := fnEmpty.Process()
		p.Starter = s
		if err := p.Start(ctx); err != nil {
			panic(err)
		}
		if err := p.Join(ctx); err != nil {
			panic(err)
		}
		if err := s.Warm(ctx); err != nil {
			panic(err)
		}
		fmt.Println("done")
		os.Exit(0)
	})
)

func newStarter(t *testing.T, opts ...Option) *Starter {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readAll reads r to EOF, failing the test if that takes longer than the
// context allows (EOF means every process holding the write end is gone).
func readAll(t *testing.T, ctx context.Context, r io.Reader) string {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		var sb strings.Builder
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			sb.WriteString(sc.Text() + "\n")
		}
		ch <- res{sb.String(), sc.Err()}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.s
	case <-ctx.Done():
		t.Fatal("output still open: some process of the tree is still alive")
		return ""
	}
}
