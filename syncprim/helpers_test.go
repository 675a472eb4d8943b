// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/shm"
)

// Cross-process tests start helper children (mptest.HelperCmd) and hand
// them primitives and shared blocks through the handle contract: the
// files travel as ExtraFiles, the descriptors in an environment variable.

const envHandles = "SYNCPRIM_TEST_HANDLES"

type handler interface {
	MultiprocHandle() ([]*os.File, []byte, error)
}

type attacher interface {
	MultiprocAttach([]*os.File, []byte) error
}

// proc is a running helper child.
type proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	in   *os.File // write end of the child's stdin
	out  *bufio.Reader
	done bool
}

// start runs helper name with args, handing it hs.
func start(t testing.TB, name string, args []string, hs ...handler) *proc {
	t.Helper()
	cmd := mptest.HelperCmd(t, name, args...)
	var specs []string
	var files []*os.File
	for _, h := range hs {
		fs, desc, err := h.MultiprocHandle()
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, fmt.Sprintf("%d:%x", len(fs), desc))
		files = append(files, fs...)
	}
	cmd.ExtraFiles = files
	cmd.Env = append(cmd.Env, envHandles+"="+strings.Join(specs, ","))
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = inR
	outR, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	err = cmd.Start()
	inR.Close()
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		inW.Close()
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, in: inW, out: bufio.NewReader(outR)}
	t.Cleanup(func() {
		if !p.done {
			p.cmd.Process.Kill()
			p.cmd.Wait()
			p.in.Close()
		}
	})
	return p
}

// expect reads the child's next output line and fails unless it is want.
func (p *proc) expect(want string) {
	p.t.Helper()
	line, err := p.out.ReadString('\n')
	if got := strings.TrimSuffix(line, "\n"); got != want || err != nil {
		p.t.Fatalf("child %d said %q (%v), want %q", p.cmd.Process.Pid, got, err, want)
	}
}

// tell writes a line to the child's stdin.
func (p *proc) tell(s string) {
	p.t.Helper()
	if _, err := fmt.Fprintln(p.in, s); err != nil {
		p.t.Fatal(err)
	}
}

// wait waits for the child and fails unless it exited 0.
func (p *proc) wait() {
	p.t.Helper()
	p.in.Close()
	err := p.cmd.Wait()
	p.done = true
	if err != nil {
		p.t.Fatalf("child %d: %v", p.cmd.Process.Pid, err)
	}
}

// kill SIGKILLs the child without reaping it (it stays a zombie until
// reap).
func (p *proc) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatal(err)
	}
}

// waitWithin is wait with a ceiling: a child still running after d is
// killed and the test fails with why, instead of hanging until the test
// binary's timeout.
func (p *proc) waitWithin(d time.Duration, why string) {
	p.t.Helper()
	p.in.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		p.done = true
		if err != nil {
			p.t.Fatalf("child %d: %v", p.cmd.Process.Pid, err)
		}
	case <-time.After(d):
		p.cmd.Process.Kill()
		<-done
		p.done = true
		p.t.Fatalf("child %d still running after %v: %s", p.cmd.Process.Pid, d, why)
	}
}

// futexSleepers returns how many threads of this process are blocked in
// futex(2) on addr (from /proc/self/task/*/syscall: number, then the
// arguments): proof that a waiter really sleeps, not merely about to.
func futexSleepers(addr unsafe.Pointer) int {
	tasks, _ := os.ReadDir("/proc/self/task")
	want := fmt.Sprintf("%d %#x ", syscall.SYS_FUTEX, uintptr(addr))
	n := 0
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/syscall")
		if err == nil && strings.HasPrefix(string(b), want) {
			n++
		}
	}
	return n
}

// waitSleepers waits until n threads sleep in futex(2) on addr, failing
// after a generous ceiling.
func waitSleepers(t testing.TB, addr unsafe.Pointer, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); futexSleepers(addr) != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d threads asleep on the futex word after 30 s, want %d", futexSleepers(addr), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func (p *proc) reap() {
	p.in.Close()
	p.cmd.Wait()
	p.done = true
}

// ---- child side ----

var childLine = bufio.NewReader(os.Stdin)

// attach rebuilds the i'th handed-over handle into a.
func attach(i int, a attacher) {
	specs := strings.Split(os.Getenv(envHandles), ",")
	fd := 3
	for j, s := range specs {
		n, hexdesc, _ := strings.Cut(s, ":")
		nf, _ := strconv.Atoi(n)
		if j == i {
			var desc []byte
			fmt.Sscanf(hexdesc, "%x", &desc)
			files := make([]*os.File, nf)
			for k := range files {
				files[k] = os.NewFile(uintptr(fd+k), "handle")
			}
			if err := a.MultiprocAttach(files, desc); err != nil {
				die("attach %d: %v", i, err)
			}
			return
		}
		fd += nf
	}
	die("no handle %d", i)
}

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "child %d: "+format+"\n", append([]any{os.Getpid()}, args...)...)
	os.Exit(1)
}

func say(s string) { fmt.Println(s) }

// hear blocks until the parent writes a line (or closes stdin).
func hear() string {
	s, _ := childLine.ReadString('\n')
	return strings.TrimSuffix(s, "\n")
}

func argInt(i int) int {
	n, err := strconv.Atoi(mptest.HelperArgs()[i])
	if err != nil {
		die("arg %d: %v", i, err)
	}
	return n
}

func must(err error, what string) {
	if err != nil {
		die("%s: %v", what, err)
	}
}

func wantErr(err, want error, what string) {
	if !errors.Is(err, want) {
		die("%s: got %v, want %v", what, err, want)
	}
}

// word64 returns the i'th 64-bit word of a block.
func word64(b *shm.Block, i int) *uint64 {
	return (*uint64)(unsafe.Add(b.Pointer(), 8*i))
}

func word32(b *shm.Block, i int) *uint32 {
	return (*uint32)(unsafe.Add(b.Pointer(), 4*i))
}

// newBlock allocates a shared block of n bytes for test data.
func newBlock(t testing.TB, n int) *shm.Block {
	t.Helper()
	a, err := shm.NewArena(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := a.Alloc(n, 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

var bg = context.Background()
