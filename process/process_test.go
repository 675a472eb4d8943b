package process_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// waitReady receives the child's "I am running" message.
func waitReady(t *testing.T, c *ipc.Conn, v any) {
	t.Helper()
	if err := c.Recv(ctxT(t), v); err != nil {
		t.Fatalf("child never said it was ready: %v", err)
	}
}

// Exit codes follow Python: 0, 1 on error or panic, n from Exit(n), -15
// after Terminate, -9 after Kill (_TestProcess, _TestSubclassingProcess).
func TestExitCodes(t *testing.T) {
	leakChecks(t)
	tests := []struct {
		name   string
		p      func() *process.Process
		signal syscall.Signal // sent once the child is running
		want   int
	}{
		{"return", func() *process.Process { return fnEmpty.Process() }, 0, 0},
		{"error", func() *process.Process { return fnFail.Process("boom") }, 0, 1},
		{"panic", func() *process.Process { return fnPanic.Process("oops") }, 0, 1},
		{"exit0", func() *process.Process { return fnExit.Process(0) }, 0, 0},
		{"exit3", func() *process.Process { return fnExit.Process(3) }, 0, 3},
		{"exit255", func() *process.Process { return fnExit.Process(255) }, 0, 255},
		{"typed", func() *process.Process { return fnSquare.Process(4) }, 0, 16},
		{"terminate", func() *process.Process { return fnBlock.Process() }, syscall.SIGTERM, -15},
		{"kill", func() *process.Process { return fnBlock.Process() }, syscall.SIGKILL, -9},
		{"interrupt", func() *process.Process { return fnBlock.Process() }, syscall.SIGINT, -2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, tt.p())
			if tt.signal != 0 {
				if err := p.Signal(tt.signal); err != nil {
					t.Fatal(err)
				}
			}
			err := p.Join(ctxT(t))
			if got := exitCode(t, p); got != tt.want {
				t.Fatalf("exit code %d, want %d (err %v)", got, tt.want, err)
			}
			var ee *process.ExitError
			switch {
			case tt.want == 0 && err != nil:
				t.Fatalf("Join: %v, want nil", err)
			case tt.want != 0 && !errors.As(err, &ee):
				t.Fatalf("Join: %v, want an *ExitError", err)
			case tt.want != 0 && ee.Code != tt.want:
				t.Fatalf("ExitError.Code %d, want %d", ee.Code, tt.want)
			case tt.signal != 0 && (ee.Signal != tt.signal || !errors.Is(err, process.ErrSignaled)):
				t.Fatalf("ExitError %+v, want signal %v", ee, tt.signal)
			}
			if p.Alive() {
				t.Fatal("Alive after exit")
			}
		})
	}
}

func TestErrorAndPanicCarryTextAndStack(t *testing.T) {
	leakChecks(t)
	p := start(t, fnFail.Process("disk on fire"))
	err := p.Wait()
	var ee *process.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Wait: %v", err)
	}
	if ee.Message != "wrapped: disk on fire" || ee.Type != "*fmt.wrapError" || ee.Panicked || ee.Startup || ee.Code != 1 {
		t.Fatalf("ExitError %+v", ee)
	}
	if !strings.Contains(err.Error(), "exited with code 1: wrapped: disk on fire") {
		t.Fatalf("Error() = %q", err)
	}

	p = start(t, fnPanic.Process("bad index"))
	err = p.Wait()
	if !errors.As(err, &ee) || !errors.Is(err, process.ErrPanicked) {
		t.Fatalf("Wait: %v", err)
	}
	if ee.Message != "bad index" || !strings.Contains(ee.Stack, "panicHere") || ee.Code != 1 {
		t.Fatalf("ExitError %+v", ee)
	}
}

// A ctx cancelled by SIGTERM lets the function clean up; it may choose its
// exit code, and a function that ignores its ctx dies after TermGrace.
func TestTerminateGrace(t *testing.T) {
	leakChecks(t)
	a, b := pipe(t)
	p := start(t, &process.Process{Func: fnCleanup, Args: []any{b}})
	b.Close()
	var s string
	waitReady(t, a, &s)
	p.Terminate()
	p.Join(ctxT(t))
	if got := exitCode(t, p); got != 7 {
		t.Fatalf("cleanup exit code %d, want 7", got)
	}

	a, b = pipe(t)
	p = start(t, &process.Process{Func: fnStubborn, Args: []any{b}, TermGrace: 50 * time.Millisecond})
	b.Close()
	waitReady(t, a, &s)
	p.Terminate()
	p.Join(ctxT(t))
	if got := exitCode(t, p); got != -15 {
		t.Fatalf("stubborn exit code %d, want -15", got)
	}
}

func TestJoinDeadline(t *testing.T) {
	leakChecks(t)
	p := start(t, fnBlock.Process())
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := p.Join(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Join: %v, want DeadlineExceeded", err)
	}
	if !p.Alive() {
		t.Fatal("not alive after an expired Join")
	}
	if _, ok := p.ExitCode(); ok {
		t.Fatal("exit code while running")
	}
	// An expired ctx never blocks (Python's join(0) and join(-1)).
	done, cancel2 := context.WithCancel(t.Context())
	cancel2()
	for range 3 {
		if err := p.Join(done); !errors.Is(err, context.Canceled) {
			t.Fatalf("Join(done): %v", err)
		}
	}
	p.Terminate()
	if err := p.Join(ctxT(t)); !errors.Is(err, process.ErrSignaled) {
		t.Fatalf("Join after Terminate: %v", err)
	}
	// Once exited, a done ctx returns the result, not the ctx error.
	if err := p.Join(done); !errors.Is(err, process.ErrSignaled) {
		t.Fatalf("Join(done) after exit: %v", err)
	}
}

func TestLifecycleErrors(t *testing.T) {
	leakChecks(t)
	var p process.Process
	if err := p.Join(ctxT(t)); !errors.Is(err, process.ErrNotStarted) {
		t.Fatalf("Join before Start: %v", err)
	}
	if err := p.Terminate(); !errors.Is(err, process.ErrNotStarted) {
		t.Fatalf("Terminate before Start: %v", err)
	}
	if _, _, err := p.Sentinel().WaitFD(); !errors.Is(err, process.ErrNotStarted) {
		t.Fatalf("Sentinel before Start: %v", err)
	}
	if p.Alive() || p.Pid() != 0 {
		t.Fatal("an unstarted process is alive or has a pid")
	}
	if err := p.Start(ctxT(t)); !errors.Is(err, process.ErrUnknownFunction) {
		t.Fatalf("Start without Func: %v", err)
	}

	q := start(t, fnBlock.Process())
	if err := q.Start(ctxT(t)); !errors.Is(err, process.ErrAlreadyStarted) {
		t.Fatalf("second Start: %v", err)
	}
	if err := q.Close(); !errors.Is(err, process.ErrRunning) {
		t.Fatalf("Close while running: %v", err)
	}
	q.Kill()
	if err := q.Wait(); !errors.Is(err, process.ErrSignaled) {
		t.Fatalf("Wait: %v", err)
	}
	if err := q.Wait(); !errors.Is(err, process.ErrWaited) {
		t.Fatalf("second Wait: %v", err)
	}
	if err := q.Join(ctxT(t)); !errors.Is(err, process.ErrClosed) {
		t.Fatalf("Join after Close: %v", err)
	}
	if err := q.Terminate(); !errors.Is(err, process.ErrClosed) {
		t.Fatalf("Terminate after Close: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if code, ok := q.ExitCode(); !ok || code != -9 {
		t.Fatalf("ExitCode after Close: %d %v", code, ok)
	}

	if _, err := process.StartMethod("fork"); !errors.Is(err, process.ErrNoFork) || !strings.Contains(err.Error(), "spawn") {
		t.Fatalf("StartMethod(fork): %v", err)
	}
	if _, err := process.StartMethod("forkserver"); !errors.Is(err, process.ErrUnknownStartMethod) {
		t.Fatalf("StartMethod(forkserver): %v", err)
	}
	if s, err := process.StartMethod(""); err != nil || s.Name() != "spawn" {
		t.Fatalf("StartMethod(\"\"): %v %v", s, err)
	}
}

func TestBadArgs(t *testing.T) {
	leakChecks(t)
	a, b := pipe(t)
	_ = a
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
		if err := tt.p.Start(ctxT(t)); !errors.Is(err, tt.want) {
			t.Errorf("%s: Start: %v, want %v", tt.name, err, tt.want)
		}
	}
	// A value the codec cannot encode fails in the parent, at Start.
	if err := fnBadCodec.Process(unexported{1}).Start(ctxT(t)); err == nil || !strings.Contains(err.Error(), "argument 0") {
		t.Fatalf("unencodable argument: %v", err)
	}
	// A closed Conn cannot be handed over.
	c, d := pipe(t)
	c.Close()
	_ = d
	if err := fnEcho.Process(c).Start(ctxT(t)); !errors.Is(err, ipc.ErrClosed) {
		t.Fatalf("closed Conn: %v", err)
	}
}

func TestRegisterPanics(t *testing.T) {
	tests := []struct {
		name string
		fn   any
		want string
	}{
		{"not a func", 42, "not a function"},
		{"no ctx", func(int) error { return nil }, "first parameter must be a context.Context"},
		{"bad return", func(context.Context) int { return 0 }, "must return error or nothing"},
		{"two returns", func(context.Context) (int, error) { return 0, nil }, "must return error or nothing"},
		{"variadic", func(context.Context, ...int) {}, "variadic"},
		{"interface", func(context.Context, any) {}, "interface type"},
		{"chan", func(context.Context, chan int) {}, "cannot travel"},
		{"duplicate", func(context.Context) {}, "already registered"},
		{"nil func", (func(context.Context))(nil), "nil function"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, tt.want) {
					t.Fatalf("panic %v, want one containing %q", r, tt.want)
				}
			}()
			name := "test.reg." + tt.name
			if tt.name == "duplicate" {
				name = "test.empty"
			}
			process.Register(name, tt.fn)
		})
	}
}

// A child that cannot start says so: a bad bootstrap message, a function
// its binary does not know.
func TestStartupErrors(t *testing.T) {
	leakChecks(t)
	tests := []struct {
		name   string
		mangle func([]byte) []byte
		want   string
	}{
		{"garbage", func([]byte) []byte { return []byte("\xff\xff\xff not protobuf") }, "bad bootstrap message"},
		{"unknown function", func(b []byte) []byte {
			return bytes.Replace(b, []byte("test.empty"), []byte("test.nope!"), 1)
		}, `"test.nope!" is not registered`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, &process.Process{Func: fnEmpty, Starter: mangler{tt.mangle}})
			err := p.Wait()
			var ee *process.ExitError
			if !errors.As(err, &ee) || !errors.Is(err, process.ErrStartup) || !strings.Contains(ee.Message, tt.want) {
				t.Fatalf("Wait: %v, want a startup error containing %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "failed to start") {
				t.Fatalf("Error() = %q", err)
			}
		})
	}
}

type unexported struct{ x int }

var fnBadCodec = process.Register("test.badcodec", func(ctx context.Context, v unexported) {})

// mangler is a Starter that corrupts the bootstrap message.
type mangler struct{ f func([]byte) []byte }

func (m mangler) Name() string { return "mangler" }
func (m mangler) Start(ctx context.Context, req *process.StartRequest) (process.Child, error) {
	r := *req
	r.Bootstrap = m.f(slices.Clone(req.Bootstrap))
	return process.Spawn.Start(ctx, &r)
}

// A program that was started as a child but never called Init refuses to
// start children of its own (Python's TestNoForkBomb).
func TestNoInitGuard(t *testing.T) {
	t.Setenv("MULTIPROC_CHILD", "3:1")
	if err := fnEmpty.Process().Start(ctxT(t)); !errors.Is(err, process.ErrNoInit) {
		t.Fatalf("Start: %v, want ErrNoInit", err)
	}
}

func TestPassConn(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	a, b := pipe(t)
	p := start(t, fnEcho.Process(b))
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

	// A simplex pipe's write end, and a socketpair end.
	for _, opts := range [][]ipc.Option{nil, {ipc.Socketpair()}} {
		r, w, err := ipc.Pipe(false, opts...)
		if err != nil {
			t.Fatal(err)
		}
		p := start(t, fnSendTo.Process(w, []byte("hello from a child")))
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

func TestCurrentParentInfo(t *testing.T) {
	leakChecks(t)
	a, b := pipe(t)
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(discard{}), zapcore.WarnLevel)
	p := start(t, &process.Process{Func: fnInfo, Args: []any{b}, Name: "worker-x",
		Env: []string{"MPTEST_VAR=from parent"}, Logger: zap.New(core)})
	b.Close()
	var got childInfo
	waitReady(t, a, &got)
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	me := process.Current()
	want := childInfo{
		Name: "worker-x", Pid: got.Pid, Ident: got.Ident, Authkey: me.Authkey, Method: "spawn",
		ParentPid: os.Getpid(), ParentAlive: true, InfoEnabled: false, WarnEnabled: true,
		Env: "from parent",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("child info (-want +got):\n%s", diff)
	}
	if got.Pid != p.Pid() || len(got.Ident) != 1 || len(me.Authkey) != 32 || me.Name != "MainProcess" {
		t.Fatalf("pid %d/%d ident %v authkey %d name %q", got.Pid, p.Pid(), got.Ident, len(me.Authkey), me.Name)
	}
	if process.Parent() != nil {
		t.Fatal("the main process has a parent")
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// Recursive children get Python's identity names, in tree order
// (_TestProcess.test_recursion).
func TestRecursiveChildren(t *testing.T) {
	leakChecks(t)
	a, b := pipe(t)
	p := start(t, fnRecurse.Process(2, b))
	b.Close()
	var names []string
	ctx := ctxT(t)
	for {
		var n string
		if err := a.Recv(ctx, &n); err != nil {
			break // EOF: the whole tree is done
		}
		names = append(names, n)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	top := names[0]
	want := []string{top, top + ":1", top + ":1:1", top + ":1:2", top + ":2", top + ":2:1", top + ":2:2"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("names (-want +got):\n%s", diff)
	}
}

// Children see only the fds they were given (TestCloseFds) and stdin is
// /dev/null (TestStdinBadfiledescriptor).
func TestChildFDs(t *testing.T) {
	leakChecks(t)
	// A socket the child must not see.
	secret, other := pipe(t)
	_ = other
	files, _, err := secret.MultiprocHandle()
	if err != nil {
		t.Fatal(err)
	}
	target, _ := os.Readlink("/proc/self/fd/" + itoa(int(files[0].Fd())))
	for _, f := range files {
		defer f.Close()
	}
	a, b := pipe(t)
	p := start(t, fnFDs.Process(b))
	b.Close()
	var rep fdReport
	waitReady(t, a, &rep)
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Targets {
		if strings.HasSuffix(l, " -> "+target) {
			t.Fatalf("child sees the parent's pipe %s: %v", target, rep.Targets)
		}
	}
	if rep.Stdin != "/dev/null" || rep.StdinN != 0 || !rep.StdinEOF {
		t.Fatalf("stdin %+v", rep)
	}
	// 0-2, the Conn's two pipe fds, the runtime's epoll and its wake-up
	// fd, and the status socket: a dozen at most.
	if len(rep.Targets) > 12 {
		t.Fatalf("child has %d fds: %v", len(rep.Targets), rep.Targets)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestStdio(t *testing.T) {
	leakChecks(t)
	var out, errb bytes.Buffer
	p := start(t, &process.Process{Func: fnStdio, Stdin: strings.NewReader("hi"), Stdout: &out, Stderr: &errb})
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "out:hi" || errb.String() != "err:hi" {
		t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
	}
	// An *os.File is given as it is.
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p = start(t, &process.Process{Func: fnStdio, Stdout: f, Stderr: f})
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(f.Name())
	if string(b) != "out:err:" {
		t.Fatalf("file got %q", b)
	}
}

// 100 processes started and terminated together.
func TestManyTerminated(t *testing.T) {
	leakChecks(t)
	const n = 100
	ps := make([]*process.Process, n)
	for i := range ps {
		ps[i] = start(t, fnBlock.Process())
	}
	if got := len(process.ActiveChildren()); got != n {
		t.Fatalf("ActiveChildren: %d, want %d", got, n)
	}
	for _, p := range ps {
		p.Terminate()
	}
	for _, p := range ps {
		p.Join(ctxT(t))
		if got := exitCode(t, p); got != -15 {
			t.Fatalf("%v: exit code %d", p, got)
		}
	}
	if got := process.ActiveChildren(); len(got) != 0 {
		t.Fatalf("ActiveChildren after join: %v", got)
	}
}

var _ ipc.Waitable = process.Sentinel{}

// The sentinel (a pidfd) becomes readable when the child exits; ipc.Wait
// waits on sentinels and Conns together (_TestProcess.test_sentinel,
// TestWait).
func TestSentinel(t *testing.T) {
	leakChecks(t)
	p := start(t, fnBlock.Process())
	q := start(t, fnBlock.Process())
	a, b := pipe(t)
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if ready, err := ipc.Wait(done, p.Sentinel(), q.Sentinel(), a); len(ready) != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait while running: %v %v", ready, err)
	}
	q.Terminate()
	ready, err := ipc.Wait(ctxT(t), p.Sentinel(), q.Sentinel(), a)
	if err != nil || len(ready) != 1 || ready[0] != q.Sentinel() {
		t.Fatalf("Wait: %v %v, want q's sentinel", ready, err)
	}
	if got := exitCode(t, q); got != -15 {
		t.Fatalf("exit code %d", got)
	}
	if _, ready, err := q.Sentinel().WaitFD(); !ready || err != nil {
		t.Fatalf("after reaping: ready %v err %v", ready, err)
	}
	b.SendBytes(ctxT(t), []byte("x"))
	if ready, err := ipc.Wait(ctxT(t), p.Sentinel(), a); err != nil || len(ready) != 1 || ready[0] != ipc.Waitable(a) {
		t.Fatalf("Wait: %v %v, want the Conn", ready, err)
	}
	p.Kill()
	if ready, err := ipc.Wait(ctxT(t), p.Sentinel()); err != nil || len(ready) != 1 {
		t.Fatalf("Wait after Kill: %v %v", ready, err)
	}
	if got := exitCode(t, p); got != -9 {
		t.Fatalf("exit code %d", got)
	}
	p.Close()
	if _, err := ipc.Wait(ctxT(t), p.Sentinel()); !errors.Is(err, process.ErrClosed) {
		t.Fatalf("Wait on a closed process's sentinel: %v", err)
	}
}

// Join survives signals arriving while it waits (_TestPollEintr).
func TestJoinEINTR(t *testing.T) {
	leakChecks(t)
	sigs := make(chan os.Signal, 1)
	signalNotify(sigs, syscall.SIGUSR1)
	defer signalStop(sigs)
	p := start(t, fnSignalParent.Process())
	if err := p.Join(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sigs:
	case <-ctxT(t).Done():
		t.Fatal("SIGUSR1 never arrived")
	}
}

func TestActiveChildrenAndShutdown(t *testing.T) {
	leakChecks(t)
	a, b := pipe(t)
	daemon := start(t, &process.Process{Func: fnBlockReady, Args: []any{b}, Daemon: true})
	b.Close()
	var pid int
	waitReady(t, a, &pid)
	plain := start(t, fnEmpty.Process())
	if err := process.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := exitCode(t, daemon); got != -15 {
		t.Fatalf("daemon exit code %d, want -15", got)
	}
	if got := exitCode(t, plain); got != 0 {
		t.Fatalf("plain exit code %d, want 0", got)
	}
	if got := process.ActiveChildren(); len(got) != 0 {
		t.Fatalf("ActiveChildren: %v", got)
	}
	// A Shutdown whose ctx ends first reports it.
	c := start(t, fnBlock.Process())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := process.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	c.Kill()
}

// A non-daemonic grandchild sees its parent die (Parent().Alive() turns
// false); a daemonic one dies with it. The middle child is SIGKILLed, so
// nothing in it gets a chance to clean up.
func TestParentKilled(t *testing.T) {
	for _, daemon := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "daemon"}[daemon], func(t *testing.T) {
			leakChecks(t)
			ctx := ctxT(t)
			a, b := pipe(t)
			mid := start(t, &process.Process{Func: fnMiddle, Args: []any{daemon, b}})
			b.Close()
			var gpid int
			waitReady(t, a, &gpid)
			var alive bool
			waitReady(t, a, &alive)
			if !alive {
				t.Fatal("grandchild says its parent is dead")
			}
			// Watch the grandchild (not our child) through a pidfd.
			pidfd, err := unix.PidfdOpen(gpid, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(pidfd)
			mid.Kill()
			if err := mid.Join(ctx); !errors.Is(err, process.ErrSignaled) {
				t.Fatalf("middle: %v", err)
			}
			if !daemon {
				if err := a.Recv(ctx, &alive); err != nil || alive {
					t.Fatalf("grandchild after its parent's death: alive=%v err=%v", alive, err)
				}
			}
			fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
			for {
				n, err := unix.Poll(fds, 30_000)
				if err == unix.EINTR {
					continue
				}
				if err != nil || n == 0 {
					t.Fatalf("grandchild %d still running after its parent died (%v)", gpid, err)
				}
				break
			}
		})
	}
}

func TestInheritedHandles(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	r, w, err := ipc.Pipe(false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	inheritConn = w
	a, b := pipe(t)
	p := start(t, fnInherited.Process(b))
	inheritConn = nil
	w.Close()
	b.Close()
	got, err := r.RecvBytes(ctx)
	if err != nil || string(got) != "via inherited" {
		t.Fatalf("inherited conn: %q %v", got, err)
	}
	var s string
	waitReady(t, a, &s)
	if s != "ok again=false" {
		t.Fatalf("child: %q", s)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := process.Inherited(inheritKey); ok {
		t.Fatal("Inherited in the main process")
	}
}

func TestCPUCount(t *testing.T) {
	n := process.CPUCount()
	if n < 1 {
		t.Fatalf("CPUCount %d", n)
	}
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) == nil && n > set.Count() {
		t.Fatalf("CPUCount %d exceeds the affinity mask's %d", n, set.Count())
	}
}
