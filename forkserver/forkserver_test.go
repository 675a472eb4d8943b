package forkserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

// The process behaviours, started through a forkserver.

func TestExitCodes(t *testing.T) {
	s := newStarter(t)
	ctx := testCtx(t)
	tests := []struct {
		name string
		p    *process.Process
		stop func(*process.Process) error
		want int
		is   error
	}{
		{name: "empty", p: fnEmpty.Process(), want: 0},
		{name: "exit1", p: fnExit.Process(1), want: 1},
		{name: "exit7", p: fnExit.Process(7), want: 7},
		{name: "error", p: fnFail.Process("bad thing"), want: 1},
		{name: "panic", p: fnPanic.Process(), want: 1, is: process.ErrPanicked},
		{name: "terminate", p: fnBlock.Process(), stop: (*process.Process).Terminate, want: -15, is: process.ErrSignaled},
		{name: "kill", p: fnBlock.Process(), stop: (*process.Process).Kill, want: -9, is: process.ErrSignaled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p
			p.Starter = s
			if err := p.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if got := p.StartMethodName(); got != "forkserver" {
				t.Errorf("StartMethodName = %q", got)
			}
			if tt.stop != nil {
				if !p.Alive() {
					t.Fatal("not alive before stop")
				}
				if err := tt.stop(p); err != nil {
					t.Fatal(err)
				}
			}
			err := p.Join(ctx)
			code, exited := p.ExitCode()
			if !exited || code != tt.want {
				t.Fatalf("ExitCode = %d, %v; want %d (Join: %v)", code, exited, tt.want, err)
			}
			if tt.want == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ee *process.ExitError
			if !errors.As(err, &ee) || ee.Code != tt.want || ee.Pid != p.Pid() {
				t.Fatalf("Join = %v, want an ExitError with code %d", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Join = %v, not %v", err, tt.is)
			}
			if tt.name == "error" && ee.Message != "bad thing" {
				t.Errorf("Message = %q", ee.Message)
			}
		})
	}
}

func TestArgsHandlesParent(t *testing.T) {
	s := newStarter(t)
	ctx := testCtx(t)
	for _, daemon := range []bool{false, true} {
		a, b, err := ipc.Pipe(true)
		if err != nil {
			t.Fatal(err)
		}
		p := fnReport.Process(42, "hello", b)
		p.Starter, p.Daemon, p.Name = s, daemon, "reporter"
		p.Env = []string{"FS_TEST_VAR=set by Process.Env"}
		p.Logger = zaptest.NewLogger(t, zaptest.Level(zap.DebugLevel))
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
			Method: "forkserver", Name: "reporter", Daemon: daemon, N: 42, S: "hello",
			Env: "set by Process.Env", LogEnabled: true,
		}
		if diff := cmp.Diff(want, got); diff != "" {
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

func TestSentinelAndTerminate(t *testing.T) {
	s := newStarter(t)
	ctx := testCtx(t)
	a, b, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p := fnBlockReady.Process(b)
	p.Starter = s
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	b.Close()
	var msg string
	if err := a.Recv(ctx, &msg); err != nil || msg != "ready" {
		t.Fatalf("Recv = %q, %v", msg, err)
	}
	// Not ready while it runs.
	polled, cancel := context.WithCancel(ctx)
	cancel()
	if ready, err := ipc.Wait(polled, p.Sentinel()); err == nil && len(ready) > 0 {
		t.Fatal("sentinel ready while the child runs")
	}
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	ready, err := ipc.Wait(ctx, p.Sentinel())
	if err != nil || len(ready) != 1 {
		t.Fatalf("ipc.Wait = %v, %v", ready, err)
	}
	if err := p.Join(ctx); !errors.Is(err, process.ErrSignaled) {
		t.Fatalf("Join = %v", err)
	}
	if code, _ := p.ExitCode(); code != -15 {
		t.Fatalf("ExitCode = %d", code)
	}
	// Signalling a reaped child is not an error.
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
}

func TestStdio(t *testing.T) {
	s := newStarter(t)
	ctx := testCtx(t)
	var out, errb bytes.Buffer
	p := fnUpper.Process()
	p.Starter = s
	p.Stdin = strings.NewReader("from stdin\n")
	p.Stdout, p.Stderr = &out, &errb
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "FROM STDIN\n" || errb.String() != "to stderr\n" {
		t.Fatalf("stdout %q, stderr %q", out.String(), errb.String())
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

// A warm process killed right after the Starter checked it: the hand-over
// fails and Start takes another.
func TestHandOverToDeadWarmProcess(t *testing.T) {
	s := newStarter(t, Size(1))
	ctx := testCtx(t)
	if err := s.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := s.take(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	w.conn.Close() // what the hand-over meets when the peer is gone
	p := fnEmpty.Process()
	p.Starter = s
	// The dead hand-over fails as Start would see it...
	if err := w.hand(ctx, &process.StartRequest{Name: "x", Bootstrap: []byte{1}}); err == nil {
		t.Fatal("hand-over on a closed control socket succeeded")
	}
	w.destroy()
	// ...and a Start afterwards gets a fresh warm process.
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
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

// A program that SIGKILLed leaves none of its forkserver processes: the
// daemonic child and the warm processes die, the non-daemonic child sees
// its parent go and ends. All of them hold the program's stdout, so EOF on
// it says that every one is gone.
func TestProgramKilledLeavesNoProcess(t *testing.T) {
	ctx := testCtx(t)
	cmd := mptest.HelperCmd(t, "fs.tree")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var first []byte
	buf := make([]byte, 1)
	for !bytes.HasSuffix(first, []byte("\n")) {
		if _, err := out.Read(buf); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("helper: %v (output %q)", err, first)
		}
		first = append(first, buf[0])
	}
	pids := readPids(string(first))
	cmd.Process.Kill()
	rest := readAll(t, ctx, out)
	cmd.Wait()
	if len(pids) != 2 {
		t.Fatalf("helper said %q", first)
	}
	want := "orphan " + strconv.Itoa(pids[1]) + " saw its parent go\n"
	if rest != want {
		t.Errorf("after the kill, output %q, want %q", rest, want)
	}
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
	if _, err := s.Start(context.Background(), &process.StartRequest{}); !errors.Is(err, ErrNoInit) {
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

// A 16 MiB argument travels in the Request frame.
func TestLargeBootstrap(t *testing.T) {
	s := newStarter(t, Size(1))
	ctx := testCtx(t)
	big := make([]byte, 16<<20)
	sum := 0
	for i := range big {
		big[i] = byte(i * 7)
		sum += int(big[i])
	}
	a, b, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p := fnSum.Process(big, b)
	p.Starter = s
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	b.Close()
	var got [2]int
	if err := a.Recv(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if got != [2]int{len(big), sum} {
		t.Fatalf("child saw %v, want %v", got, [2]int{len(big), sum})
	}
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
}

// More files than one frame carries go in several frames, in order.
func TestManyFiles(t *testing.T) {
	s := newStarter(t, Size(1))
	ctx := testCtx(t)
	readers := make([]*ipc.Conn, manyConns)
	args := make([]any, manyConns)
	for i := range manyConns {
		r, w, err := ipc.Pipe(true)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		readers[i], args[i] = r, w
	}
	p := fnMany.Process(args...)
	p.Starter = s
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, a := range args {
		a.(*ipc.Conn).Close()
	}
	for i, r := range readers {
		var got int
		if err := r.Recv(ctx, &got); err != nil || got != i {
			t.Fatalf("connection %d: got %d, %v", i, got, err)
		}
	}
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
}

// A child has its stdio, its handles' fds, the status socket and the Go
// runtime's own: nothing of the parent's, nothing of the warm process's
// control socket that it could inherit.
func TestChildFDs(t *testing.T) {
	s := newStarter(t, Size(1))
	ctx := testCtx(t)
	// A pipe the child must not see, made before and after the warm
	// process was started, without close-on-exec.
	var secrets []string
	mkSecret := func() {
		var fds [2]int
		if err := unix.Pipe2(fds[:], 0); err != nil {
			t.Fatal(err)
		}
		for _, fd := range fds {
			t.Cleanup(func() { unix.Close(fd) })
		}
		target, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fds[0]))
		secrets = append(secrets, target)
	}
	mkSecret()
	if err := s.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	mkSecret()
	a, b, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p := fnFDs.Process(b)
	p.Starter = s
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	b.Close()
	var rep fdReport
	if err := a.Recv(ctx, &rep); err != nil {
		t.Fatal(err)
	}
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Targets {
		for _, secret := range secrets {
			if strings.HasSuffix(l, " -> "+secret) {
				t.Fatalf("child sees the parent's pipe %s: %v", secret, rep.Targets)
			}
		}
	}
	if rep.Stdin != "/dev/null" || rep.StdinN != 0 || !rep.StdinEOF {
		t.Fatalf("stdin %+v", rep)
	}
	// At most: 0-2; the Conn's two pipes and its eventfd; the status
	// socket; the runtime's epoll and eventfd and the two cgroup files it
	// keeps open; the warm process's control socket and its eventfd while
	// a goroutine closes them; the fd of the /proc/self/fd listing.
	if len(rep.Targets) > 14 {
		t.Fatalf("child has %d fds: %v", len(rep.Targets), rep.Targets)
	}
}

// A child that cleans up when terminated reports its own exit code.
func TestTerminateGrace(t *testing.T) {
	s := newStarter(t)
	ctx := testCtx(t)
	a, b, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p := fnCleanup.Process(b)
	p.Starter = s
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	b.Close()
	var msg string
	if err := a.Recv(ctx, &msg); err != nil {
		t.Fatal(err)
	}
	p.Terminate()
	p.Join(ctx)
	if code, _ := p.ExitCode(); code != 7 {
		t.Fatalf("exit code %d, want 7", code)
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
