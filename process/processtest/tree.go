// SPDX-License-Identifier: Apache-2.0

package processtest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
	"golang.org/x/sys/unix"
)

// Children start children of their own with the same start method, and
// get Python's identity names, in tree order
// (_TestProcess.test_recursion).
func testRecursiveChildren(t *testing.T, e *env) {
	a, b := pipe(t)
	p := e.start(t, fnRecurse.Process(e.m.Name(), 2, b))
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
	if len(names) == 0 {
		t.Fatal("no names")
	}
	top := names[0]
	want := []string{top, top + ":1", top + ":1:1", top + ":1:2", top + ":2", top + ":2:1", top + ":2:2"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("names (-want +got):\n%s", diff)
	}
}

// 100 processes started and terminated together.
func testManyTerminated(t *testing.T, e *env) {
	const n = 100
	ps := make([]*process.Process, n)
	for i := range ps {
		ps[i] = e.start(t, fnBlock.Process())
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

// ActiveChildren lists the running children; Shutdown terminates the
// daemonic ones and waits for all, or reports that its ctx ended first.
func testActiveChildrenAndShutdown(t *testing.T, e *env) {
	if got := process.ActiveChildren(); len(got) != 0 {
		t.Fatalf("ActiveChildren before: %v", got)
	}
	a, b := pipe(t)
	daemon := e.start(t, &process.Process{Func: fnBlockReady, Args: []any{b}, Daemon: true})
	b.Close()
	var pid int
	recv(t, a, &pid)
	plain := e.start(t, fnEmpty.Process())
	if got := process.ActiveChildren(); len(got) > 2 || len(got) < 1 || !containsProcess(got, daemon) {
		t.Fatalf("ActiveChildren: %v, want the daemon and perhaps the other", got)
	}
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
	// A Shutdown whose ctx ends first reports it; the child keeps running.
	c := e.start(t, fnBlock.Process())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := process.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v", err)
	}
	if !c.Alive() {
		t.Fatal("a non-daemonic child did not survive a cancelled Shutdown")
	}
	c.Kill()
}

func containsProcess(ps []*process.Process, p *process.Process) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// A daemonic process may not have children (as in Python).
func testDaemonNoChildren(t *testing.T, e *env) {
	p := e.start(t, &process.Process{Func: fnDaemonParent, Args: []any{e.m.Name()}, Daemon: true})
	err := p.Wait()
	var ee *process.ExitError
	if !errors.As(err, &ee) || !strings.Contains(ee.Message, "daemonic processes are not allowed to have children") {
		t.Fatalf("Wait: %v", err)
	}
}

// A non-daemonic grandchild sees its parent die (Parent().Alive() turns
// false, Done is closed); a daemonic one dies with it. The middle child is
// SIGKILLed, so nothing in it gets a chance to clean up.
func testParentKilled(t *testing.T, e *env) {
	for _, daemon := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "daemon"}[daemon], func(t *testing.T) {
			ctx := ctxT(t)
			a, b := pipe(t)
			mid := e.start(t, &process.Process{Func: fnMiddle, Args: []any{e.m.Name(), daemon, b}})
			b.Close()
			var rep watchReport
			recv(t, a, &rep)
			if !rep.ParentAlive || rep.ParentPid != mid.Pid() {
				t.Fatalf("grandchild says %+v; its parent is %d, alive", rep, mid.Pid())
			}
			gpid := rep.Pid
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
				var alive bool
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

// A program (not itself a child) that is SIGKILLed leaves nothing: its
// daemonic child dies, its other child sees it go and ends, and whatever
// the Starter made in it (a Warmer's ready processes) ends too. All of them hold the program's stdout,
// so EOF on it says that every one is gone.
func testProgramKilled(t *testing.T, e *env) {
	cmd := mptest.HelperCmd(t, "processtest.program", e.m.Name())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	r := bufio.NewReader(out)
	first, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v (output %q)", err, first)
	}
	var pids []int
	for _, f := range strings.Fields(first) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	if len(pids) != 2 {
		t.Fatalf("helper said %q", first)
	}
	cmd.Process.Kill()
	rest := readToEOF(t, r)
	want := "orphan " + strconv.Itoa(pids[1]) + " saw its parent go\n"
	if rest != want {
		t.Errorf("after the kill, output %q, want %q", rest, want)
	}
}

// readToEOF reads r to EOF, failing the test if that takes longer than
// ctxT allows (EOF means every process holding the write end is gone).
func readToEOF(t *testing.T, r io.Reader) string {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		b, err := io.ReadAll(r)
		ch <- res{b, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return string(r.b)
	case <-ctxT(t).Done():
		t.Fatal("output still open: some process of the tree is still alive")
		return ""
	}
}
