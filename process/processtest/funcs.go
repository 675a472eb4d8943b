// SPDX-License-Identifier: Apache-2.0

package processtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/process/starter"
	commonpb "github.com/multiproc/multiproc/proto/common/v1"
)

// The functions the suite runs in children. Registered at package level,
// so that every test binary that imports this package has them, in the
// parent and in each child alike.
var (
	fnEmpty = process.Register("processtest.empty", func(ctx context.Context) {})
	fnExit  = process.Register("processtest.exit", func(ctx context.Context, code int) error {
		return process.Exit(code)
	})
	// fnOSExit ends the process with os.Exit, never returning.
	fnOSExit = process.Register("processtest.osexit", func(ctx context.Context, code int) {
		os.Exit(code)
	})
	fnFail = process.Register("processtest.fail", func(ctx context.Context, msg string) error {
		return fmt.Errorf("wrapped: %w", errors.New(msg))
	})
	fnPanic = process.Register("processtest.panic", func(ctx context.Context, msg string) {
		panicHere(msg)
	})
	fnSquare = process.Register1("processtest.square", func(ctx context.Context, n int) error {
		return process.Exit(n * n)
	})
	// fnBlock runs until its context is cancelled (SIGTERM).
	fnBlock = process.Register("processtest.block", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	// fnBlockReady sends its pid on c, then runs until SIGTERM.
	fnBlockReady = process.Register("processtest.blockready", func(ctx context.Context, c *ipc.Conn) error {
		defer c.Close()
		if err := c.Send(ctx, os.Getpid()); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	})
	// fnStubborn ignores its context.
	fnStubborn = process.Register("processtest.stubborn", func(ctx context.Context, c *ipc.Conn) {
		c.Send(ctx, "ready")
		c.Close()
		for {
			time.Sleep(time.Hour)
		}
	})
	// fnCleanup returns exit code 7 when terminated.
	fnCleanup = process.Register("processtest.cleanup", func(ctx context.Context, c *ipc.Conn) error {
		c.Send(ctx, "ready")
		c.Close()
		<-ctx.Done()
		return process.Exit(7)
	})
	// fnEcho answers each message on c with "echo:" and the message,
	// until EOF.
	fnEcho = process.Register("processtest.echo", func(ctx context.Context, c *ipc.Conn) error {
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
	fnSendTo = process.Register("processtest.sendto", func(ctx context.Context, w *ipc.Conn, msg []byte) error {
		defer w.Close()
		return w.SendBytes(ctx, msg)
	})
	fnArgs = process.Register("processtest.args", func(ctx context.Context, c *ipc.Conn, raw []byte, m *commonpb.RemoteError, p point, pp *point, s string, xs []int) error {
		defer c.Close()
		return c.Send(ctx, argReport{Raw: raw, Proto: m.GetMessage() + "/" + m.GetStack(), Point: p, Ptr: pp, Str: s, Slice: xs})
	})
	fnBadCodec = process.Register("processtest.badcodec", func(ctx context.Context, v unexported) {})
	// fnSum reports the length and byte sum of a large argument.
	fnSum = process.Register("processtest.sum", func(ctx context.Context, b []byte, c *ipc.Conn) error {
		defer c.Close()
		sum := 0
		for _, x := range b {
			sum += int(x)
		}
		return c.Send(ctx, [2]int{len(b), sum})
	})
	// fnMany takes manyConns connections and sends its index on each.
	fnMany = process.Register("processtest.many", reflect.MakeFunc(manyType(), func(args []reflect.Value) []reflect.Value {
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
	fnInfo = process.Register("processtest.info", func(ctx context.Context, c *ipc.Conn) error {
		defer c.Close()
		me := process.Current()
		pp := process.Parent()
		return c.Send(ctx, childInfo{
			Name: me.Name, Pid: me.Pid, Ident: me.Ident, Daemon: me.Daemon, Authkey: me.Authkey,
			Method: me.StartMethod, ParentPid: pp.Pid, ParentAlive: pp.Alive(),
			LogLevel: lowestLevel(me.Logger.Core().Enabled),
			Env:      os.Getenv("PROCESSTEST_VAR"), Marker: os.Getenv("MULTIPROC_CHILD"),
		})
	})
	// fnEnv reports the values of the variables named in keys.
	fnEnv = process.Register("processtest.env", func(ctx context.Context, keys []string, c *ipc.Conn) error {
		defer c.Close()
		vals := make([]string, len(keys))
		for i, k := range keys {
			v, ok := os.LookupEnv(k)
			if !ok {
				v = "<unset>"
			}
			vals[i] = v
		}
		return c.Send(ctx, vals)
	})
	// fnCwd reports its working directory and the content of the file
	// named name, read by that relative name.
	fnCwd = process.Register("processtest.cwd", func(ctx context.Context, name string, c *ipc.Conn) error {
		defer c.Close()
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		return c.Send(ctx, [2]string{wd, string(b)})
	})
	fnFDs = process.Register("processtest.fds", func(ctx context.Context, c *ipc.Conn) error {
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
	// fnStdio copies stdin, upper-cased, to stdout and to stderr, with a
	// prefix on each.
	fnStdio = process.Register("processtest.stdio", func(ctx context.Context) error {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		up := strings.ToUpper(string(b))
		if _, err := fmt.Fprintf(os.Stdout, "out:%s", up); err != nil {
			return err
		}
		_, err = fmt.Fprintf(os.Stderr, "err:%s", up)
		return err
	})
	fnSignalParent = process.Register("processtest.sigparent", func(ctx context.Context) error {
		return unix.Kill(process.Parent().Pid, unix.SIGUSR1)
	})
	fnInherited = process.Register("processtest.inherited", func(ctx context.Context, c *ipc.Conn) error {
		defer c.Close()
		files, desc, ok := starter.Inherited(inheritKey)
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
		_, _, again := starter.Inherited(inheritKey)
		return c.Send(ctx, fmt.Sprintf("ok again=%v", again))
	})
	// fnRecurse sends its name on c, then runs itself twice in children,
	// one after the other, down to depth 0, with a Starter of method.
	fnRecurse = process.Register("processtest.recurse", func(ctx context.Context, method string, depth int, c *ipc.Conn) error {
		defer c.Close()
		if err := c.Send(ctx, process.Current().Name); err != nil {
			return err
		}
		if depth == 0 {
			return nil
		}
		s, closeS, err := newStarter(method)
		if err != nil {
			return err
		}
		defer closeS()
		for range 2 {
			p := &process.Process{Func: recurseFn, Args: []any{method, depth - 1, c}, Starter: s}
			if err := p.Start(ctx); err != nil {
				return err
			}
			if err := p.Wait(); err != nil {
				return err
			}
		}
		return nil
	})
	// fnMiddle starts a grandchild with a Starter of method, running
	// fnWatchParent with c, then waits to be killed.
	fnMiddle = process.Register("processtest.middle", func(ctx context.Context, method string, daemon bool, c *ipc.Conn) error {
		defer c.Close()
		s, closeS, err := newStarter(method)
		if err != nil {
			return err
		}
		defer closeS()
		p := &process.Process{Func: watchParentFn, Args: []any{c}, Daemon: daemon, Starter: s}
		if err := p.Start(ctx); err != nil {
			return err
		}
		c.Close() // the grandchild alone talks on c
		<-ctx.Done()
		return nil
	})
	// fnWatchParent reports its pid, its parent's and the parent's
	// liveness, then, once the parent is gone, its liveness again.
	fnWatchParent = process.Register("processtest.watchparent", func(ctx context.Context, c *ipc.Conn) error {
		defer c.Close()
		pp := process.Parent()
		if err := c.Send(ctx, watchReport{Pid: os.Getpid(), ParentPid: pp.Pid, ParentAlive: pp.Alive()}); err != nil {
			return err
		}
		select {
		case <-pp.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		return c.Send(ctx, pp.Alive())
	})
	// fnOrphan waits until its parent is gone, then says so on stdout.
	fnOrphan = process.Register("processtest.orphan", func(ctx context.Context) {
		<-process.Parent().Done()
		fmt.Printf("orphan %d saw its parent go\n", os.Getpid())
	})
	// fnDaemonParent tries to start a child (it is a daemon: it may not).
	fnDaemonParent = process.Register("processtest.daemonparent", func(ctx context.Context, method string) error {
		s, closeS, err := newStarter(method)
		if err != nil {
			return err
		}
		defer closeS()
		p := fnEmpty.Process()
		p.Starter = s
		if err := p.Start(ctx); err != nil {
			return err
		}
		return p.Wait()
	})
)

// Set in init to break the initialisation cycle of functions that start
// themselves or each other.
var recurseFn, watchParentFn *process.Func

func init() { recurseFn, watchParentFn = fnRecurse, fnWatchParent }

// The helper program of testProgramKilled: with a Starter of the method
// named by its argument, it starts a daemonic child that blocks and a
// non-daemonic one that waits for its parent to go, warms the Starter if
// it is a Warmer, prints the children's pids and waits to be killed.
var _ = mptest.RegisterHelper("processtest.program", func() {
	args := mptest.HelperArgs()
	if len(args) != 1 {
		fmt.Fprintf(os.Stderr, "processtest.program: want a method name, got %q\n", args)
		os.Exit(2)
	}
	s, _, err := newStarter(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx := context.Background()
	d := &process.Process{Func: fnBlock, Daemon: true, Starter: s}
	o := &process.Process{Func: fnOrphan, Starter: s}
	for _, p := range []*process.Process{d, o} {
		if err := p.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "processtest.program:", err)
			os.Exit(2)
		}
	}
	// A Starter that prepares processes ahead of time has them ready when
	// the program is killed: they must end too.
	if w, ok := s.(Warmer); ok {
		if err := w.Warm(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "processtest.program: Warm:", err)
			os.Exit(2)
		}
	}
	fmt.Printf("started daemon %d orphan %d\n", d.Pid(), o.Pid())
	for {
		time.Sleep(time.Hour) // until SIGKILL
	}
})

//go:noinline
func panicHere(msg string) { panic(msg) }

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

type unexported struct{ x int }

// manyConns duplex pipe Conns (two files each, plus the status socket
// and stdio) are more than fit in one SCM_RIGHTS message (253 files);
// reflect allows at most 128 parameters and results.
const manyConns = 126

// manyType is func(context.Context, *ipc.Conn x manyConns) error.
func manyType() reflect.Type {
	in := []reflect.Type{reflect.TypeFor[context.Context]()}
	for range manyConns {
		in = append(in, reflect.TypeFor[*ipc.Conn]())
	}
	return reflect.FuncOf(in, []reflect.Type{reflect.TypeFor[error]()}, false)
}

type childInfo struct {
	Name        string
	Pid         int
	Ident       []uint32
	Daemon      bool
	Authkey     []byte
	Method      string
	ParentPid   int
	ParentAlive bool
	LogLevel    string
	Env         string
	Marker      string
}

type watchReport struct {
	Pid, ParentPid int
	ParentAlive    bool
}

type fdReport struct {
	Targets  []string
	Stdin    string
	StdinN   int
	StdinEOF bool
}
