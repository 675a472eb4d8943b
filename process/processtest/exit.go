// SPDX-License-Identifier: Apache-2.0

package processtest

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
)

// Exit codes follow Python: 0, 1 on error or panic, n from Exit(n), minus
// the signal number when a signal killed the child (_TestProcess,
// _TestSubclassingProcess).
func testExitCodes(t *testing.T, e *env) {
	signal := func(sig syscall.Signal) func(*process.Process) error {
		return func(p *process.Process) error { return p.Signal(sig) }
	}
	tests := []struct {
		name string
		p    func() *process.Process
		stop func(*process.Process) error // called once the child runs
		sig  syscall.Signal
		want int
	}{
		{name: "return", p: func() *process.Process { return fnEmpty.Process() }},
		{name: "error", p: func() *process.Process { return fnFail.Process("boom") }, want: 1},
		{name: "panic", p: func() *process.Process { return fnPanic.Process("oops") }, want: 1},
		{name: "exit0", p: func() *process.Process { return fnExit.Process(0) }},
		{name: "exit3", p: func() *process.Process { return fnExit.Process(3) }, want: 3},
		{name: "exit255", p: func() *process.Process { return fnExit.Process(255) }, want: 255},
		{name: "osexit5", p: func() *process.Process { return fnOSExit.Process(5) }, want: 5},
		{name: "typed", p: func() *process.Process { return fnSquare.Process(4) }, want: 16},
		{name: "terminate", p: func() *process.Process { return fnBlock.Process() }, stop: (*process.Process).Terminate, sig: syscall.SIGTERM, want: -15},
		{name: "kill", p: func() *process.Process { return fnBlock.Process() }, stop: (*process.Process).Kill, sig: syscall.SIGKILL, want: -9},
		{name: "interrupt", p: func() *process.Process { return fnBlock.Process() }, stop: (*process.Process).Interrupt, sig: syscall.SIGINT, want: -2},
		{name: "sigterm", p: func() *process.Process { return fnBlock.Process() }, stop: signal(syscall.SIGTERM), sig: syscall.SIGTERM, want: -15},
		{name: "sighup", p: func() *process.Process { return fnBlock.Process() }, stop: signal(syscall.SIGHUP), sig: syscall.SIGHUP, want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := e.start(t, tt.p())
			if tt.stop != nil {
				if err := tt.stop(p); err != nil {
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
			case tt.want != 0 && (ee.Code != tt.want || ee.Pid != p.Pid() || ee.Name != p.ProcessName()):
				t.Fatalf("ExitError %+v, want code %d, pid %d, name %q", ee, tt.want, p.Pid(), p.ProcessName())
			case tt.sig != 0 && (ee.Signal != tt.sig || !errors.Is(err, process.ErrSignaled)):
				t.Fatalf("ExitError %+v, want signal %v", ee, tt.sig)
			case tt.sig == 0 && tt.want != 0 && errors.Is(err, process.ErrSignaled):
				t.Fatalf("ExitError %+v is ErrSignaled", ee)
			}
			if p.Alive() {
				t.Fatal("Alive after exit")
			}
			// Signalling a child that exited is not an error.
			if err := p.Kill(); err != nil {
				t.Fatalf("Kill after exit: %v", err)
			}
		})
	}
}

// An error's text and Go type, a panic's value and stack reach the parent.
func testErrorAndPanic(t *testing.T, e *env) {
	p := e.start(t, fnFail.Process("disk on fire"))
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
	if errors.Is(err, process.ErrPanicked) || errors.Is(err, process.ErrStartup) {
		t.Fatalf("an error is a panic or a startup failure: %v", err)
	}

	p = e.start(t, fnPanic.Process("bad index"))
	err = p.Wait()
	if !errors.As(err, &ee) || !errors.Is(err, process.ErrPanicked) {
		t.Fatalf("Wait: %v", err)
	}
	if ee.Message != "bad index" || !strings.Contains(ee.Stack, "panicHere") || ee.Code != 1 || !ee.Panicked {
		t.Fatalf("ExitError %+v", ee)
	}
}

// A ctx cancelled by SIGTERM lets the function clean up; it may choose its
// exit code, and a function that ignores its ctx dies after TermGrace.
func testTerminateGrace(t *testing.T, e *env) {
	a, b := pipe(t)
	// The function returns as soon as its ctx ends: the grace only bounds
	// a hang, so it is generous (the default second could run out on a
	// loaded machine, and SIGKILL would replace the exit code 7).
	p := e.start(t, &process.Process{Func: fnCleanup, Args: []any{b}, TermGrace: time.Minute})
	b.Close()
	var s string
	recv(t, a, &s)
	p.Terminate()
	p.Join(ctxT(t))
	if got := exitCode(t, p); got != 7 {
		t.Fatalf("cleanup exit code %d, want 7", got)
	}

	a, b = pipe(t)
	p = e.start(t, &process.Process{Func: fnStubborn, Args: []any{b}, TermGrace: 50 * time.Millisecond})
	b.Close()
	recv(t, a, &s)
	p.Terminate()
	p.Join(ctxT(t))
	if got := exitCode(t, p); got != -15 {
		t.Fatalf("stubborn exit code %d, want -15", got)
	}
}

// Join returns the ctx's error when it ends first; a done ctx never
// blocks (Python's join(0)).
func testJoinDeadline(t *testing.T, e *env) {
	p := e.start(t, fnBlock.Process())
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

// Alive, ExitCode, Pid, ProcessName, StartMethodName and String before
// Start, while the child runs and after it exited.
func testState(t *testing.T, e *env) {
	a, b := pipe(t)
	p := &process.Process{Func: fnBlockReady, Args: []any{b}, Name: "stateful"}
	if p.Alive() || p.Pid() != 0 || p.ProcessName() != "stateful" || p.StartMethodName() != "" {
		t.Fatalf("before Start: alive %v pid %d name %q method %q", p.Alive(), p.Pid(), p.ProcessName(), p.StartMethodName())
	}
	if _, ok := p.ExitCode(); ok {
		t.Fatal("exit code before Start")
	}
	if got := p.String(); got != `<Process name="stateful" initial>` {
		t.Fatalf("String before Start = %s", got)
	}
	e.start(t, p)
	b.Close()
	var pid int
	recv(t, a, &pid)
	if pid != p.Pid() || pid <= 0 {
		t.Fatalf("the child's pid is %d, Pid() says %d", pid, p.Pid())
	}
	if !p.Alive() {
		t.Fatal("not alive while running")
	}
	if _, ok := p.ExitCode(); ok {
		t.Fatal("exit code while running")
	}
	if got := p.String(); !strings.Contains(got, "started") || !strings.Contains(got, `"stateful"`) {
		t.Fatalf("String while running = %s", got)
	}
	p.Terminate()
	p.Join(ctxT(t))
	if p.Alive() || p.Pid() != pid || exitCode(t, p) != -15 {
		t.Fatalf("after exit: alive %v pid %d code %d", p.Alive(), p.Pid(), exitCode(t, p))
	}
	if got := p.String(); !strings.Contains(got, "exitcode=-15") {
		t.Fatalf("String after exit = %s", got)
	}
}

// The errors of calls made in the wrong state.
func testLifecycle(t *testing.T, e *env) {
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
	p.Starter = e.s
	if err := p.Start(ctxT(t)); !errors.Is(err, process.ErrUnknownFunction) {
		t.Fatalf("Start without Func: %v", err)
	}

	q := e.start(t, fnBlock.Process())
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
	if err := q.Start(ctxT(t)); !errors.Is(err, process.ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if code, ok := q.ExitCode(); !ok || code != -9 {
		t.Fatalf("ExitCode after Close: %d %v", code, ok)
	}
}

// Join, Alive and ExitCode from many goroutines at once, while the child
// is terminated: everyone sees the same end.
func testConcurrentJoin(t *testing.T, e *env) {
	p := e.start(t, fnBlock.Process())
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

var _ ipc.Waitable = process.Sentinel{}

// The sentinel becomes readable when the child exits; ipc.Wait waits on
// sentinels and Conns together (_TestProcess.test_sentinel, TestWait).
func testSentinel(t *testing.T, e *env) {
	p := e.start(t, fnBlock.Process())
	q := e.start(t, fnBlock.Process())
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

// Join survives signals arriving while it waits (_TestPollEintr); the
// child's Parent().Pid is this process.
func testJoinEINTR(t *testing.T, e *env) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	p := e.start(t, fnSignalParent.Process())
	if err := p.Join(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sigs:
	case <-ctxT(t).Done():
		t.Fatal("SIGUSR1 never arrived")
	}
}
