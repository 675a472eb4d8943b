// SPDX-License-Identifier: Apache-2.0

package tracker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"
)

var nopLogger = zap.NewNop()

const testPrefix = "mptrk_"

// shmFile creates /dev/shm/<name> (what shm.Create does, without the
// module cycle of importing shm here).
func shmFile(name string) error {
	f, err := os.OpenFile("/dev/shm/"+name, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

func exists(name string) bool {
	_, err := os.Stat("/dev/shm/" + name)
	return err == nil
}

// report is what the test children send back.
type report struct {
	Tracker  int
	Trackers []int
	Warned   bool
	Err      string
}

var (
	// fnCreator creates and registers names, creates unregistered ones
	// (registered then unregistered, and never registered), reports its
	// tracker and waits to be killed.
	fnCreator = process.Register("tracker.test.creator", func(ctx context.Context, reg, unreg, untracked []string, out *ipc.Conn) error {
		defer out.Close()
		for _, n := range slices.Concat(reg, unreg, untracked) {
			if err := shmFile(n); err != nil {
				return err
			}
		}
		for _, n := range slices.Concat(reg, unreg) {
			if err := Register(ctx, SharedMemory, n); err != nil {
				return err
			}
		}
		for _, n := range unreg {
			if err := Unregister(ctx, SharedMemory, n); err != nil {
				return err
			}
		}
		if err := out.Send(ctx, report{Tracker: Pid()}); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	})

	// fnTree registers a name, starts a child that registers another one
	// through the inherited tracker, and reports both trackers.
	fnTree = process.Register("tracker.test.tree", func(ctx context.Context, a, b string, out *ipc.Conn) error {
		defer out.Close()
		if err := shmFile(a); err != nil {
			return err
		}
		if err := Register(ctx, SharedMemory, a); err != nil {
			return err
		}
		r, w, err := ipc.Pipe(false)
		if err != nil {
			return err
		}
		defer r.Close()
		p := fnCreator.Process([]string{b}, []string(nil), []string(nil), w)
		if err := p.Start(ctx); err != nil {
			return err
		}
		w.Close()
		var got report
		if err := r.Recv(ctx, &got); err != nil {
			return err
		}
		p.Kill()
		p.Wait()
		if err := out.Send(ctx, report{Tracker: Pid(), Trackers: []int{got.Tracker}}); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	})

	// fnRestart registers a, reports its tracker, waits for the test to
	// kill the tracker, registers b, and reports the new tracker and
	// whether the relaunch warning was logged.
	fnRestart = process.Register("tracker.test.restart", func(ctx context.Context, a, b string, c *ipc.Conn) error {
		defer c.Close()
		core, logs := observer.New(zap.WarnLevel)
		SetLogger(zap.New(core))
		if err := shmFile(a); err != nil {
			return err
		}
		if err := shmFile(b); err != nil {
			return err
		}
		if err := Register(ctx, SharedMemory, a); err != nil {
			return err
		}
		if err := c.Send(ctx, report{Tracker: Pid()}); err != nil {
			return err
		}
		var goOn bool
		if err := c.Recv(ctx, &goOn); err != nil {
			return err
		}
		if err := Register(ctx, SharedMemory, b); err != nil {
			return err
		}
		warned := logs.FilterMessageSnippet("died unexpectedly").Len() == 1
		if err := c.Send(ctx, report{Tracker: Pid(), Warned: warned}); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	})
)

// uniq returns n fresh names.
func uniq(t *testing.T, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%d_%d_%s_%d", testPrefix, os.Getpid(), time.Now().UnixNano()%1e9, t.Name(), i)
		names[i] = strings.ReplaceAll(names[i], "/", "_")
	}
	t.Cleanup(func() {
		for _, n := range names {
			os.Remove("/dev/shm/" + n)
		}
	})
	return names
}

// waitExit waits, with a generous bound, until the process pid (not
// necessarily a child) has exited.
func waitExit(t *testing.T, pid int) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		t.Fatalf("pidfd_open(%d): %v", pid, err)
	}
	defer unix.Close(fd)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, 60_000)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			t.Fatalf("tracker %d still running after 60 s (poll: %v)", pid, err)
		}
		return
	}
}

func alive(pid int) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _ := unix.Poll(pfd, 0)
	return n == 0
}

// startChild starts fn with args plus a pipe end and returns the
// process and the test's end.
func startChild(t *testing.T, stderr *os.File, duplex bool, fn *process.Func, args ...any) (*process.Process, *ipc.Conn) {
	t.Helper()
	a, b, err := ipc.Pipe(duplex)
	if err != nil {
		t.Fatal(err)
	}
	p := fn.Process(append(args, b)...)
	if stderr != nil {
		p.Stderr = stderr
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Close()
	t.Cleanup(func() {
		a.Close()
		p.Kill()
		p.Wait()
		p.Close()
	})
	return p, a
}

func recvReport(t *testing.T, c *ipc.Conn) report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var r report
	if err := c.Recv(ctx, &r); err != nil {
		t.Fatalf("child report: %v", err)
	}
	return r
}

func TestKilledCreatorLeavesNothing(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckChildren(t)
	names := uniq(t, 5)
	reg, unreg, untracked := names[:3], names[3:4], names[4:]
	logf, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p, c := startChild(t, logf, false, fnCreator, reg, unreg, untracked)
	r := recvReport(t, c)
	if r.Tracker <= 0 {
		t.Fatalf("child reports tracker pid %d", r.Tracker)
	}
	ctx := context.Background()
	res, err := listPid(ctx, r.Tracker)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, x := range res {
		listed = append(listed, x.Name)
		if x.Type != SharedMemory || x.Pid != p.Pid() || x.Tracker != r.Tracker {
			t.Errorf("listed %+v", x)
		}
	}
	slices.Sort(reg)
	if !slices.Equal(listed, reg) {
		t.Errorf("List = %v, want %v", listed, reg)
	}
	all, err := ListAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(all, func(tr Tracker) bool { return tr.Pid == r.Tracker && len(tr.Resources) == len(reg) }) {
		t.Errorf("ListAll = %+v: tracker %d with %d resources missing", all, r.Tracker, len(reg))
	}

	p.Kill()
	p.Wait()
	waitExit(t, r.Tracker)
	for _, n := range reg {
		if exists(n) {
			t.Errorf("%s still in /dev/shm after the tree died", n)
		}
	}
	for _, n := range slices.Concat(unreg, untracked) {
		if !exists(n) {
			t.Errorf("%s (not registered) was unlinked", n)
		}
	}
	b, err := os.ReadFile(logf.Name())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range reg {
		if !strings.Contains(string(b), n) {
			t.Errorf("tracker's stderr does not name the leaked %s:\n%s", n, b)
		}
	}
	for _, n := range slices.Concat(unreg, untracked) {
		if strings.Contains(string(b), n) {
			t.Errorf("tracker's stderr names %s, never leaked:\n%s", n, b)
		}
	}
}

func TestChildrenReuseTracker(t *testing.T) {
	mptest.CheckChildren(t)
	names := uniq(t, 2)
	p, c := startChild(t, nil, false, fnTree, names[0], names[1])
	r := recvReport(t, c)
	if r.Tracker <= 0 || len(r.Trackers) != 1 || r.Trackers[0] != r.Tracker {
		t.Fatalf("parent's tracker %d, child's %v: want the same", r.Tracker, r.Trackers)
	}
	res, err := listPid(context.Background(), r.Tracker)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Errorf("tracker holds %+v, want both names", res)
	}
	p.Kill()
	p.Wait()
	waitExit(t, r.Tracker)
	for _, n := range names {
		if exists(n) {
			t.Errorf("%s leaked", n)
		}
	}
}

func TestTrackerKilledIsRestarted(t *testing.T) {
	mptest.CheckChildren(t)
	names := uniq(t, 2)
	p, c := startChild(t, nil, true, fnRestart, names[0], names[1])
	r1 := recvReport(t, c)
	if err := unix.Kill(r1.Tracker, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, r1.Tracker)
	if err := c.Send(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	r2 := recvReport(t, c)
	if r2.Tracker <= 0 || r2.Tracker == r1.Tracker {
		t.Fatalf("tracker after the kill: %d (before: %d)", r2.Tracker, r1.Tracker)
	}
	if !r2.Warned {
		t.Error("no warning that the tracker died")
	}
	res, err := listPid(context.Background(), r2.Tracker)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Name != names[1] {
		t.Errorf("new tracker holds %+v, want just %s", res, names[1])
	}
	p.Kill()
	p.Wait()
	waitExit(t, r2.Tracker)
	if exists(names[1]) {
		t.Errorf("%s (registered with the new tracker) leaked", names[1])
	}
	if !exists(names[0]) {
		t.Errorf("%s (registered with the killed tracker) was unlinked: nobody could", names[0])
	}
}

func TestTrackerIgnoresTermAndInt(t *testing.T) {
	mptest.CheckChildren(t)
	names := uniq(t, 1)
	p, c := startChild(t, nil, false, fnCreator, names, []string(nil), []string(nil))
	r := recvReport(t, c)
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGINT} {
		if err := unix.Kill(r.Tracker, sig); err != nil {
			t.Fatal(err)
		}
	}
	// An ignored signal is discarded when sent: the tracker must still
	// answer, and still hold the name.
	res, err := listPid(context.Background(), r.Tracker)
	if err != nil || len(res) != 1 || !alive(r.Tracker) {
		t.Fatalf("tracker after SIGTERM and SIGINT: %+v, %v, alive %v", res, err, alive(r.Tracker))
	}
	// Its own session: not in the tree's process group.
	pgid, _ := unix.Getpgid(r.Tracker)
	sid, _ := unix.Getsid(r.Tracker)
	if pgid != r.Tracker || sid != r.Tracker {
		t.Errorf("tracker %d: pgid %d sid %d, want its own session", r.Tracker, pgid, sid)
	}
	p.Kill()
	p.Wait()
	waitExit(t, r.Tracker)
	if exists(names[0]) {
		t.Errorf("%s leaked", names[0])
	}
}

func TestRegisterChecks(t *testing.T) {
	ctx := context.Background()
	if err := Register(ctx, "no_such_type", "x"); !errors.Is(err, ErrUnknownType) {
		t.Errorf("unknown type: %v", err)
	}
	for _, n := range []string{"", "a\x00b", strings.Repeat("x", MaxNameLen+1)} {
		if err := Register(ctx, SharedMemory, n); !errors.Is(err, ErrBadName) {
			t.Errorf("name %q: %v", n, err)
		}
	}
	if Pid() != 0 {
		return // the Example, in an earlier round of -count, started one
	}
	// No tracker in the test process: Unregister and List start none.
	if err := Unregister(ctx, SharedMemory, "nothing"); err != nil || Pid() != 0 {
		t.Errorf("Unregister without a tracker: %v, tracker %d", err, Pid())
	}
	if _, err := List(ctx); !errors.Is(err, ErrNotRunning) {
		t.Errorf("List without a tracker: %v", err)
	}
}

// CPython's names carry a leading "/", multiproc's do not: the same
// resource either way.
func TestStateNormalisesSlash(t *testing.T) {
	s := &state{m: map[key]int{}, log: nopLogger}
	s.consume([]byte("REGISTER:/psm_1:shared_memory\nREGISTER:/mp-1:semaphore\n"))
	s.consume(encode(nil, message{op: opUnregister, rtype: SharedMemory, name: "psm_1", pid: 1}))
	s.consume(encode(nil, message{op: opRegister, rtype: SharedMemory, name: "psm_2", pid: 1}))
	s.consume([]byte("UNREGISTER:/psm_2:shared_memory\n"))
	if got := s.snapshot(); len(got) != 1 || got[0].Name != "mp-1" || got[0].Type != Semaphore {
		t.Errorf("registry %+v, want just the semaphore mp-1", got)
	}
}

// A creator that returns normally without unlinking: its Wait does not
// wait for the tracker (not a child the process package knows), which
// outlives it and cleans up.
func TestCreatorExitsNormally(t *testing.T) {
	mptest.CheckChildren(t)
	names := uniq(t, 1)
	p, c := startChild(t, nil, false, fnRegisterAndReturn, names[0])
	r := recvReport(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.Join(ctx); err != nil {
		t.Fatalf("creator: %v", err)
	}
	waitExit(t, r.Tracker)
	if exists(names[0]) {
		t.Errorf("%s leaked", names[0])
	}
}

var fnRegisterAndReturn = process.Register("tracker.test.return", func(ctx context.Context, name string, out *ipc.Conn) error {
	defer out.Close()
	if err := shmFile(name); err != nil {
		return err
	}
	if err := Register(ctx, SharedMemory, name); err != nil {
		return err
	}
	return out.Send(ctx, report{Tracker: Pid()})
})

// A bad message on the pipe is logged and skipped; the tracker goes on.
func TestStateSkipsGarbage(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	s := &state{m: map[key]int{}, log: zap.New(core)}
	var in []byte
	in = encode(in, message{op: opRegister, rtype: SharedMemory, name: "a", pid: 1})
	in = append(in, "garbage\x00\x00\x01"...)
	in = append(in, "REGISTER:/b:shared_memory\n"...)
	in = encode(in, message{op: opRegister, rtype: SharedMemory, name: "c", pid: 2})
	in = encode(in, message{op: opUnregister, rtype: SharedMemory, name: "a", pid: 1})
	in = encode(in, message{op: opRegister, rtype: "unknown", name: "d", pid: 3})
	part := encode(nil, message{op: opRegister, rtype: SharedMemory, name: "e", pid: 3})
	in = append(in, part[:5]...)
	rest := s.consume(in)
	if len(rest) != 5 {
		t.Errorf("rest %q, want the 5-byte start of a message", rest)
	}
	var names []string
	for _, r := range s.snapshot() {
		names = append(names, r.Name)
	}
	if want := []string{"b", "c"}; !slices.Equal(names, want) {
		t.Errorf("registry %v, want %v", names, want)
	}
	if !s.bad || logs.FilterMessageSnippet("malformed").Len() == 0 || logs.FilterMessageSnippet("unknown resource type").Len() != 1 {
		t.Errorf("bad %v, logs %v", s.bad, logs.All())
	}
}

func TestUnlinkDevShmRejectsPaths(t *testing.T) {
	for _, n := range []string{"", "../etc", "a/b"} {
		if err := unlinkDevShm(n); err == nil {
			t.Errorf("unlinkDevShm(%q) succeeded", n)
		}
	}
	if err := unlinkDevShm(filepath.Base(t.TempDir()) + "_none"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

// fnGarbage writes garbage into the tracker's pipe, then registers name.
var fnGarbage = process.Register("tracker.test.garbage", func(ctx context.Context, name string, out *ipc.Conn) error {
	defer out.Close()
	if err := EnsureRunning(ctx); err != nil {
		return err
	}
	client.Lock()
	fd := client.c.fd
	client.Unlock()
	for _, junk := range []string{"\x00R\xff\xff\xff", "REGISTER:no-type\n", "\x00Z\x04\x00\x01\x00\x00\x00\x01noopx", "\xde\xad\xbe\xef", "{\"cmd\":1}\n"} {
		if err := writeAll(fd, []byte(junk)); err != nil {
			return err
		}
	}
	if err := shmFile(name); err != nil {
		return err
	}
	if err := Register(ctx, SharedMemory, name); err != nil {
		return err
	}
	if err := out.Send(ctx, report{Tracker: Pid()}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
})

// Garbage on the pipe is skipped: the tracker keeps working.
func TestTrackerSurvivesGarbage(t *testing.T) {
	mptest.CheckChildren(t)
	names := uniq(t, 1)
	logf, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p, c := startChild(t, logf, false, fnGarbage, names[0])
	r := recvReport(t, c)
	res, err := listPid(context.Background(), r.Tracker)
	if err != nil || len(res) != 1 || res[0].Name != names[0] {
		t.Fatalf("after garbage the tracker lists %+v, %v", res, err)
	}
	p.Kill()
	p.Wait()
	waitExit(t, r.Tracker)
	if exists(names[0]) {
		t.Errorf("%s leaked", names[0])
	}
	b, _ := os.ReadFile(logf.Name())
	if !strings.Contains(string(b), "malformed") || !strings.Contains(string(b), names[0]) {
		t.Errorf("tracker's stderr:\n%s", b)
	}
}

// fnRelay starts fnCreator(b) with out, never touching the tracker
// itself, and ends (killing its child) when its own parent is gone.
var fnRelay = process.Register("tracker.test.relay", func(ctx context.Context, b string, out *ipc.Conn) error {
	p := fnCreator.Process([]string{b}, []string(nil), []string(nil), out)
	err := p.Start(ctx)
	out.Close()
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-process.Parent().Done():
	}
	p.Kill()
	return p.Wait()
})

// fnGrand registers a, then starts fnRelay(b, out) and waits like it.
var fnGrand = process.Register("tracker.test.grand", func(ctx context.Context, a, b string, out *ipc.Conn) error {
	if err := shmFile(a); err != nil {
		return err
	}
	if err := Register(ctx, SharedMemory, a); err != nil {
		return err
	}
	p := fnRelay.Process(b, out)
	err := p.Start(ctx)
	out.Close()
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-process.Parent().Done():
	}
	p.Kill()
	return p.Wait()
})

// A child that never used the tracker still hands it on: its own child's
// registrations go to the tree's tracker.
func TestConnectionPassesThroughSilentChild(t *testing.T) {
	mptest.CheckChildren(t)
	names := uniq(t, 2)
	p, c := startChild(t, nil, false, fnGrand, names[0], names[1])
	r := recvReport(t, c) // from the grandchild
	res, err := listPid(context.Background(), r.Tracker)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("the grandchild's tracker holds %+v: want both the child's and its own name", res)
	}
	p.Kill()
	p.Wait()
	waitExit(t, r.Tracker)
	for _, n := range names {
		if exists(n) {
			t.Errorf("%s leaked", n)
		}
	}
}
