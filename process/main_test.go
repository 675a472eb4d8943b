package process_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	process.Init()
	mptest.Main(m)
}

// Functions the tests run in children. Registered at package level, so
// that the re-executed test binary has them too.
var (
	fnEmpty = process.Register("test.empty", func(ctx context.Context) {})
	fnExit  = process.Register("test.exit", func(ctx context.Context, code int) error {
		return process.Exit(code)
	})
	fnFail = process.Register("test.fail", func(ctx context.Context, msg string) error {
		return fmt.Errorf("wrapped: %w", errors.New(msg))
	})
	fnPanic = process.Register("test.panic", func(ctx context.Context, msg string) {
		panicHere(msg)
	})
	// fnBlock runs until its context is cancelled (SIGTERM).
	fnBlock = process.Register("test.block", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	// fnBlockReady tells c it is running, then runs until SIGTERM.
	fnBlockReady = process.Register("test.blockready", func(ctx context.Context, c *ipc.Conn) error {
		defer c.Close()
		if err := c.Send(ctx, os.Getpid()); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	})
	// fnStubborn ignores its context.
	fnStubborn = process.Register("test.stubborn", func(ctx context.Context, c *ipc.Conn) {
		c.Send(ctx, "ready")
		c.Close()
		for {
			time.Sleep(time.Hour)
		}
	})
	// fnCleanup returns exit code 7 when terminated.
	fnCleanup = process.Register("test.cleanup", func(ctx context.Context, c *ipc.Conn) error {
		c.Send(ctx, "ready")
		c.Close()
		<-ctx.Done()
		return process.Exit(7)
	})
	fnEcho = process.Register("test.echo", func(ctx context.Context, c *ipc.Conn) error {
		defer c.Close()
		for {
			b, err := c.RecvBytes(ctx)
			if err != nil {
				return nil // EOF: the parent is done
			}
			if err := c.SendBytes(ctx, append([]byte("echo:"), b...)); err != nil {
				return err
			}
		}
	})
	fnSendTo = process.Register("test.sendto", func(ctx context.Context, w *ipc.Conn, msg []byte) error {
		defer w.Close()
		return w.SendBytes(ctx, msg)
	})
	fnInfo = process.Register("test.info", func(ctx context.Context, c *ipc.Conn) error {
		defer c.Close()
		me := process.Current()
		pp := process.Parent()
		return c.Send(ctx, childInfo{
			Name: me.Name, Pid: me.Pid, Ident: me.Ident, Daemon: me.Daemon, Authkey: me.Authkey,
			Method: me.StartMethod, ParentPid: pp.Pid, ParentAlive: pp.Alive(),
			InfoEnabled: me.Logger.Core().Enabled(-0), WarnEnabled: me.Logger.Core().Enabled(1),
			Env: os.Getenv("MPTEST_VAR"), Marker: os.Getenv("MULTIPROC_CHILD"),
		})
	})
	fnFDs = process.Register("test.fds", func(ctx context.Context, c *ipc.Conn) error {
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
	fnRecurse = process.Register("test.recurse", func(ctx context.Context, depth int, c *ipc.Conn) error {
		defer c.Close()
		if err := c.Send(ctx, process.Current().Name); err != nil {
			return err
		}
		for i := 0; depth > 0 && i < 2; i++ {
			p := &process.Process{Func: fnRecurseRef(), Args: []any{depth - 1, c}}
			if err := p.Start(ctx); err != nil {
				return err
			}
			if err := p.Wait(); err != nil {
				return err
			}
		}
		return nil
	})
	fnStdio = process.Register("test.stdio", func(ctx context.Context) error {
		b := make([]byte, 100)
		n, _ := os.Stdin.Read(b)
		fmt.Fprintf(os.Stdout, "out:%s", b[:n])
		fmt.Fprintf(os.Stderr, "err:%s", b[:n])
		return nil
	})
	fnSignalParent = process.Register("test.sigparent", func(ctx context.Context) error {
		return unix.Kill(process.Parent().Pid, unix.SIGUSR1)
	})
	// fnMiddle starts a grandchild running fn with c, tells c the
	// grandchild's pid, then waits to be killed.
	fnMiddle = process.Register("test.middle", func(ctx context.Context, daemon bool, c *ipc.Conn) error {
		defer c.Close()
		p := &process.Process{Func: fnWatchParentRef(), Args: []any{c}, Daemon: daemon}
		if err := p.Start(ctx); err != nil {
			return err
		}
		if err := c.Send(ctx, p.Pid()); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	})
	// fnWatchParent reports its parent's liveness before and after the
	// parent dies.
	fnWatchParent = process.Register("test.watchparent", func(ctx context.Context, c *ipc.Conn) error {
		defer c.Close()
		pp := process.Parent()
		if err := c.Send(ctx, pp.Alive()); err != nil {
			return err
		}
		select {
		case <-pp.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		return c.Send(ctx, pp.Alive())
	})
	fnInherited = process.Register("test.inherited", func(ctx context.Context, c *ipc.Conn) error {
		defer c.Close()
		files, desc, ok := process.Inherited(inheritKey)
		if !ok {
			return c.Send(ctx, "none")
		}
		w, err := ipc.ConnFromHandle(files, desc)
		if err != nil {
			return err
		}
		defer w.Close()
		if err := w.SendBytes(ctx, []byte("via inherited")); err != nil {
			return err
		}
		_, _, again := process.Inherited(inheritKey)
		return c.Send(ctx, fmt.Sprintf("ok again=%v", again))
	})
	fnSquare = process.Register1("test.square", func(ctx context.Context, n int) error {
		return process.Exit(n * n)
	})
)

// Set in init to break the initialisation cycle of functions that start
// themselves or each other.
var recurseFn, watchParentFn *process.Func

func init() { recurseFn, watchParentFn = fnRecurse, fnWatchParent }

func fnRecurseRef() *process.Func     { return recurseFn }
func fnWatchParentRef() *process.Func { return watchParentFn }

//go:noinline
func panicHere(msg string) { panic(msg) }

type childInfo struct {
	Name        string
	Pid         int
	Ident       []uint32
	Daemon      bool
	Authkey     []byte
	Method      string
	ParentPid   int
	ParentAlive bool
	InfoEnabled bool
	WarnEnabled bool
	Env         string
	Marker      string
}

type fdReport struct {
	Targets  []string
	Stdin    string
	StdinN   int
	StdinEOF bool
}

// The inherited-handle hook: every child started while inheritConn is set
// gets a duplicate of it.
const inheritKey = "test.inherited"

var inheritConn *ipc.Conn

func init() {
	process.RegisterInherited(inheritKey, func() ([]*os.File, []byte, error) {
		if inheritConn == nil {
			return nil, nil, nil
		}
		return inheritConn.MultiprocHandle()
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func leakChecks(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckChildren(t)
}

func start(t *testing.T, p *process.Process) *process.Process {
	t.Helper()
	if err := p.Start(ctxT(t)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if p.Alive() {
			p.Kill()
		}
		p.Join(context.Background())
		p.Close()
	})
	return p
}

func pipe(t *testing.T) (*ipc.Conn, *ipc.Conn) {
	t.Helper()
	a, b, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func exitCode(t *testing.T, p *process.Process) int {
	t.Helper()
	code, ok := p.ExitCode()
	if !ok {
		t.Fatalf("%v: no exit code", p)
	}
	return code
}
