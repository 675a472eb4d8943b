// SPDX-License-Identifier: Apache-2.0

package forkserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/process/processtest"
	"github.com/multiproc/multiproc/process/starter"
)

// The process package's conformance suite (exit codes, signals, Join,
// arguments and handles, stdio, descriptors, trees of processes, daemons,
// Shutdown...) with a forkserver; children that start grandchildren make
// their own forkserver by the method's name.
var method = processtest.RegisterMethod("forkserver", func() (process.Starter, error) { return New() })

func TestConformance(t *testing.T) {
	processtest.TestStarter(t, method)
}

// What the suite leaves to each start method: the forkserver's own
// behaviours.

// A forkserver child is the program's own child: getppid, not only
// Parent().Pid, is the program's pid, daemon or not (a CPython forkserver
// child's parent is the server).
func TestChildOfTheProgram(t *testing.T) {
	mptest.CheckChildren(t)
	s := newStarter(t)
	ctx := testCtx(t)
	for _, daemon := range []bool{false, true} {
		a, b, err := ipc.Pipe(true)
		if err != nil {
			t.Fatal(err)
		}
		p := fnReport.Process(42, "hello", b)
		p.Starter, p.Daemon = s, daemon
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		b.Close()
		var got report
		if err := a.Recv(ctx, &got); err != nil {
			t.Fatal(err)
		}
		a.Close()
		if err := p.Join(ctx); err != nil {
			t.Fatal(err)
		}
		p.Close()
		want := report{
			Pid: p.Pid(), Ppid: os.Getpid(), ParentPid: os.Getpid(), ParentAlive: true,
			Method: "forkserver", Daemon: daemon, N: 42, S: "hello",
		}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(report{}, "Name", "Env")); diff != "" {
			t.Errorf("daemon=%v: child report (-want +got):\n%s", daemon, diff)
		}
	}
}

// The program's environment changed after the warm processes started: the
// child still gets the program's environment of the time of Start.
func TestEnvChangedAfterWarm(t *testing.T) {
	s := newStarter(t, Size(1))
	ctx := testCtx(t)
	if err := s.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FS_TEST_VAR", "changed later")
	a, b, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p := fnReport.Process(1, "x", b)
	p.Starter = s
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	b.Close()
	var got report
	if err := a.Recv(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if got.Env != "changed later" {
		t.Errorf("child's FS_TEST_VAR = %q", got.Env)
	}
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
}

// A warm process that died (killed by someone) is replaced: the next
// start succeeds, whether or not the Starter has noticed the death.
func TestKilledWarmProcessReplaced(t *testing.T) {
	s := newStarter(t, Size(2))
	ctx := testCtx(t)
	for round := range 2 {
		if err := s.Warm(ctx); err != nil {
			t.Fatal(err)
		}
		// Kill every warm process and wait until it is dead (not reaped).
		for range 2 {
			r := <-s.ready
			if round == 0 {
				syscall.Kill(r.w.pid, syscall.SIGKILL)
			} else {
				r.w.child.Signal(syscall.SIGKILL)
			}
			fd, _, err := r.w.child.WaitFD()
			if err != nil {
				t.Fatal(err)
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			for {
				if _, err := unix.Poll(pfd, -1); err != unix.EINTR {
					break
				}
			}
			s.ready <- r
		}
		p := fnExit.Process(5)
		p.Starter = s
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		p.Join(ctx)
		if code, _ := p.ExitCode(); code != 5 {
			t.Fatalf("round %d: exit code %d, want 5", round, code)
		}
		p.Close()
	}
}

// A warm process prepares the child's SIGTERM watcher before its request
// (starter.PrepareChild); until a function runs, SIGTERM still ends it as
// the signal's default action would (exit code -15), and the next start
// takes another.
func TestTerminatedWarmProcess(t *testing.T) {
	s := newStarter(t, Size(1))
	ctx := testCtx(t)
	if err := s.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-s.ready
	if err := r.w.child.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := r.w.child.Wait(ctx); err != nil || code != -15 {
		t.Fatalf("warm process after SIGTERM: exit code %d, %v; want -15", code, err)
	}
	s.ready <- r
	p := fnExit.Process(4)
	p.Starter = s
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Pid() == r.w.pid {
		t.Fatalf("Start returned the terminated warm process %d", r.w.pid)
	}
	p.Join(ctx)
	if code, _ := p.ExitCode(); code != 4 {
		t.Fatalf("exit code %d, want 4", code)
	}
}

// A warm process keeps the program's stdout it was started with, unless
// the program has since put another file on its fd 1 (dup2): the child
// then writes to the new one, as a spawned child would.
func TestStdoutRedirectedAfterWarm(t *testing.T) {
	s := newStarter(t, Size(1))
	ctx := testCtx(t)
	if err := s.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	saved, err := unix.FcntlInt(1, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := unix.Dup3(int(w.Fd()), 1, 0); err != nil {
		t.Fatal(err)
	}
	w.Close()
	p := fnHello.Process()
	p.Starter = s
	err = p.Start(ctx)
	// Put the test's stdout back before anything else may write to it.
	unix.Dup3(saved, 1, 0)
	unix.Close(saved)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	// The refill may have started the next warm process while fd 1 was
	// still the pipe, and it holds the write end open: close the Starter
	// (it kills its warm processes) so that the read ends.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, ctx, r)
	if want := fmt.Sprintln("hello from", p.Pid()); got != want {
		t.Fatalf("the child wrote %q on the program's redirected stdout, want %q", got, want)
	}
}

// A warm process SIGKILLed at the moment of the hand-over, after the
// Starter took it: the hand-over fails and Start takes another (making
// one: the set holds only the dead one), so the start succeeds.
// killWarm SIGKILLs a warm process and waits until it is dead (its pidfd
// readable), not reaped: its end of the control socket is closed when the
// hand-over starts.
func killWarm(t *testing.T, w *warm) {
	if err := syscall.Kill(w.pid, syscall.SIGKILL); err != nil {
		t.Errorf("kill warm process %d: %v", w.pid, err)
		return
	}
	fd, _, err := w.child.WaitFD()
	if err != nil {
		t.Errorf("warm process %d: %v", w.pid, err)
		return
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(pfd, -1); err != unix.EINTR {
			break
		}
	}
}

// Warm processes that are all found dead at the hand-over: a Start
// replaces maxDeadWarm of them without counting them, then spends its
// maxAttempts and fails, instead of looping until its context ends.
func TestEveryWarmProcessDead(t *testing.T) {
	mptest.CheckChildren(t)
	s := newStarter(t, Size(1))
	ctx := testCtx(t)
	handed := 0
	hook := func(w *warm) {
		handed++
		killWarm(t, w)
	}
	testHookHand.Store(&hook)
	defer testHookHand.Store(nil)
	p := fnExit.Process(7)
	p.Starter = s
	err := p.Start(ctx)
	if err == nil {
		p.Close()
		t.Fatal("Start succeeded with every warm process killed at its hand-over")
	}
	if ctx.Err() != nil {
		t.Fatalf("Start ended with its context (%v), want its own error", err)
	}
	if want := maxDeadWarm + maxAttempts; handed != want {
		t.Fatalf("%d hand-overs before Start failed, want %d (%d dead replaced, then %d attempts): %v",
			handed, want, maxDeadWarm, maxAttempts, err)
	}
}

func TestHandOverToDeadWarmProcess(t *testing.T) {
	mptest.CheckChildren(t)
	s := newStarter(t, Size(1))
	ctx := testCtx(t)
	if err := s.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	var killed []int
	hook := func(w *warm) {
		if len(killed) > 0 {
			return // the second warm process is handed the request
		}
		killed = append(killed, w.pid)
		killWarm(t, w)
	}
	testHookHand.Store(&hook)
	defer testHookHand.Store(nil)
	p := fnExit.Process(7)
	p.Starter = s
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start after the warm process was killed at hand-over: %v", err)
	}
	defer p.Close()
	testHookHand.Store(nil)
	if len(killed) != 1 {
		t.Fatalf("the hand-over hook ran %d times before the first hand-over, want 1", len(killed))
	}
	if p.Pid() == killed[0] {
		t.Fatalf("Start returned the killed warm process %d", killed[0])
	}
	p.Join(ctx) // an *ExitError for code 7
	if code, _ := p.ExitCode(); code != 7 {
		t.Fatalf("the child that replaced the killed warm process exited %d, want 7", code)
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	mptest.CheckChildren(t)
	mptest.CheckFDs(t)
	s, err := New(Size(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if err := s.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	p := fnEmpty.Process()
	p.Starter = s
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	p = fnEmpty.Process()
	p.Starter = s
	if err := p.Start(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v", err)
	}
	if err := s.Warm(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Warm after Close = %v", err)
	}
}

func TestOptions(t *testing.T) {
	if _, err := New(Size(0)); err == nil {
		t.Error("Size(0) accepted")
	}
	if _, err := New(ReadyTimeout(-1)); err == nil {
		t.Error("ReadyTimeout(-1) accepted")
	}
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "forkserver" {
		t.Error(s.Name())
	}
	s.Close()
}

// A program that exits without closing its Starter leaves no warm process.
func TestProgramExitLeavesNoProcess(t *testing.T) {
	ctx := testCtx(t)
	cmd := mptest.HelperCmd(t, "fs.exit")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, ctx, out)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got != "done\n" {
		t.Fatalf("output %q", got)
	}
}

// Start in a warm process whose main skipped process.Init is refused.
func TestStartInWarmWithoutInit(t *testing.T) {
	t.Setenv(envWarm, "3")
	s := newStarter(t)
	if _, err := s.Start(context.Background(), &starter.Request{}); !errors.Is(err, ErrNoInit) {
		t.Fatalf("Start = %v", err)
	}
}

// A binary whose warm processes cannot become ready: Start fails (after a
// few attempts), says why, and leaves nothing behind.
func TestWarmProcessNeverReady(t *testing.T) {
	mptest.CheckChildren(t)
	t.Setenv("FS_TEST_INIT_EXIT", "3")
	s := newStarter(t, Size(1))
	p := fnEmpty.Process()
	p.Starter = s
	err := p.Start(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "exited with code 3 before it was ready") {
		t.Fatalf("Start = %v", err)
	}
}

// Start waiting for a warm process returns when its context is done.
func TestStartCancelled(t *testing.T) {
	s := newStarter(t, Size(1))
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	p := fnEmpty.Process()
	p.Starter = s
	if err := p.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start = %v", err)
	}
}

// A forkserver child starts children of its own, with Spawn and with a
// forkserver of its own.
func TestGrandchildren(t *testing.T) {
	s := newStarter(t, Size(1))
	ctx := testCtx(t)
	a, b, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p := fnGrandchildren.Process(b)
	p.Starter = s
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	b.Close()
	var got []string
	if err := a.Recv(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"spawn:4", "forkserver:4"}, got); diff != "" {
		t.Errorf("grandchildren (-want +got):\n%s", diff)
	}
}

// Concurrent Warms and Starts share the set without waiting for each
// other forever.
func TestConcurrentWarmAndStart(t *testing.T) {
	s := newStarter(t, Size(2))
	ctx := testCtx(t)
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			if i%2 == 0 {
				errs <- s.Warm(ctx)
				return
			}
			p := fnExit.Process(i)
			p.Starter = s
			if err := p.Start(ctx); err != nil {
				errs <- err
				return
			}
			defer p.Close()
			p.Join(ctx)
			if code, _ := p.ExitCode(); code != i {
				errs <- fmt.Errorf("exit code %d, want %d", code, i)
				return
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
