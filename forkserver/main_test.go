package forkserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
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
	LogEnabled  bool
}

var (
	fnEmpty = process.Register("fs.empty", func(ctx context.Context) {})
	fnExit  = process.Register("fs.exit", func(ctx context.Context, code int) error {
		return process.Exit(code)
	})
	fnFail = process.Register("fs.fail", func(ctx context.Context, msg string) error {
		return errors.New(msg)
	})
	fnPanic = process.Register("fs.panic", func(ctx context.Context) { panic("boom") })
	// fnReport sends what it knows on c.
	fnReport = process.Register("fs.report", func(ctx context.Context, n int, s string, c *ipc.Conn) error {
		defer c.Close()
		cur := process.Current()
		return c.Send(ctx, report{
			Pid: os.Getpid(), Ppid: os.Getppid(),
			ParentPid: process.Parent().Pid, ParentAlive: process.Parent().Alive(),
			Method: cur.StartMethod, Name: cur.Name, Daemon: cur.Daemon,
			N: n, S: s, Env: os.Getenv("FS_TEST_VAR"),
			LogEnabled: cur.Logger.Core().Enabled(-1),
		})
	})
	// fnBlockReady tells c it runs, then waits for SIGTERM.
	fnBlockReady = process.Register("fs.blockready", func(ctx context.Context, c *ipc.Conn) error {
		c.Send(ctx, "ready")
		c.Close()
		<-ctx.Done()
		return ctx.Err()
	})
	// fnUpper copies stdin to stdout in upper case, and a line to stderr.
	fnUpper = process.Register("fs.upper", func(ctx context.Context) error {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		fmt.Fprint(os.Stderr, "to stderr\n")
		_, err = os.Stdout.WriteString(strings.ToUpper(string(b)))
		return err
	})
	// fnOrphan waits until its parent is gone, then says so on stdout.
	fnOrphan = process.Register("fs.orphan", func(ctx context.Context) {
		<-process.Parent().Done()
		fmt.Printf("orphan %d saw its parent go\n", os.Getpid())
	})
	// fnSum reports the length and byte sum of a large argument.
	fnSum = process.Register("fs.sum", func(ctx context.Context, b []byte, c *ipc.Conn) error {
		defer c.Close()
		sum := 0
		for _, x := range b {
			sum += int(x)
		}
		return c.Send(ctx, [2]int{len(b), sum})
	})
	// fnMany takes manyConns connections and sends its index on each.
	fnMany = process.Register("fs.many", reflect.MakeFunc(manyType(), func(args []reflect.Value) []reflect.Value {
		ctx := args[0].Interface().(context.Context)
		for i, a := range args[1:] {
			c := a.Interface().(*ipc.Conn)
			if err := c.Send(ctx, i); err != nil {
				return []reflect.Value{reflect.ValueOf(&err).Elem()}
			}
			c.Close()
		}
		return []reflect.Value{reflect.Zero(reflect.TypeFor[error]())}
	}).Interface())
	// fnFDs reports the child's open fds and what its stdin is.
	fnFDs = process.Register("fs.fds", func(ctx context.Context, c *ipc.Conn) error {
		defer c.Close()
		ents, _ := os.ReadDir("/proc/self/fd")
		var targets []string
		for _, e := range ents {
			t, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
			targets = append(targets, e.Name()+" -> "+t)
		}
		stdin, _ := os.Readlink("/proc/self/fd/0")
		n, err := os.Stdin.Read(make([]byte, 1))
		return c.Send(ctx, fdReport{Targets: targets, Stdin: stdin, StdinN: n, StdinEOF: err != nil})
	})
	// fnCleanup returns exit code 7 when terminated.
	fnCleanup = process.Register("fs.cleanup", func(ctx context.Context, c *ipc.Conn) error {
		c.Send(ctx, "ready")
		c.Close()
		<-ctx.Done()
		return process.Exit(7)
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
	fnBlock = process.Register("fs.block", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
)

type fdReport struct {
	Targets  []string
	Stdin    string
	StdinN   int
	StdinEOF bool
}

func fnExitRef() *process.Func { return fnExit }

// manyConns duplex pipe Conns (two files each, plus the status socket
// and stdio) are more than one frame's worth of files (253); reflect
// allows at most 128 parameters and results.
const manyConns = 126

// manyType is func(context.Context, *ipc.Conn x manyConns) error.
func manyType() reflect.Type {
	in := []reflect.Type{reflect.TypeFor[context.Context]()}
	for range manyConns {
		in = append(in, reflect.TypeFor[*ipc.Conn]())
	}
	return reflect.FuncOf(in, []reflect.Type{reflect.TypeFor[error]()}, false)
}

// Helpers: programs that use a forkserver and end, for the leak tests.
var (
	// helperTree starts a daemonic and a non-daemonic child through a
	// forkserver, prints their pids and waits to be killed.
	_ = mptest.RegisterHelper("fs.tree", func() {
		ctx := context.Background()
		s, err := New(Size(2))
		if err != nil {
			panic(err)
		}
		if err := s.Warm(ctx); err != nil {
			panic(err)
		}
		d := fnBlock.Process()
		d.Daemon, d.Starter = true, s
		o := fnOrphan.Process()
		o.Starter = s
		for _, p := range []*process.Process{d, o} {
			if err := p.Start(ctx); err != nil {
				panic(err)
			}
		}
		if err := s.Warm(ctx); err != nil {
			panic(err)
		}
		fmt.Printf("started daemon %d orphan %d\n", d.Pid(), o.Pid())
		select {}
	})
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

// readPids parses "word pid word pid ..." into the pids.
func readPids(line string) []int {
	var pids []int
	for _, f := range strings.Fields(line) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
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
