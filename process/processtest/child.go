// SPDX-License-Identifier: Apache-2.0

package processtest

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/process/starter"
)

// lowestLevel names the lowest level enabled, or "off".
func lowestLevel(enabled func(zapcore.Level) bool) string {
	for l := zapcore.DebugLevel; l <= zapcore.FatalLevel; l++ {
		if enabled(l) {
			return l.String()
		}
	}
	return "off"
}

// What a child knows of itself and its parent: name (given or Python's
// default), pid, identity, daemon flag, authkey, start method, the
// parent's pid and liveness; its logger follows the level of its
// Process.Logger; Process.Env reaches it; the start-up marker is gone.
func testCurrentAndParent(t *testing.T, e *env) {
	logger := func(l zapcore.Level) *zap.Logger {
		return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), l))
	}
	me := process.Current()
	if me.Name != "MainProcess" || len(me.Ident) != 0 || me.StartMethod != "" || me.Daemon || len(me.Authkey) != 32 {
		t.Fatalf("Current() in the test process: %+v", me)
	}
	if process.Parent() != nil {
		t.Fatal("the main process has a parent")
	}
	tests := []struct {
		name   string
		daemon bool
		logger *zap.Logger
		level  string
	}{
		{"worker-x", false, logger(zapcore.WarnLevel), "warn"},
		{"", true, logger(zapcore.DebugLevel), "debug"},
		{"", false, nil, "off"},
	}
	for _, tt := range tests {
		a, b := pipe(t)
		p := e.start(t, &process.Process{Func: fnInfo, Args: []any{b}, Name: tt.name, Daemon: tt.daemon,
			Env: []string{"PROCESSTEST_VAR=from parent"}, Logger: tt.logger})
		b.Close()
		var got childInfo
		recv(t, a, &got)
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
		want := childInfo{
			Name: p.ProcessName(), Pid: p.Pid(), Ident: got.Ident, Daemon: tt.daemon, Authkey: me.Authkey,
			Method: e.s.Name(), ParentPid: os.Getpid(), ParentAlive: true, LogLevel: tt.level,
			Env: "from parent",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("child %q daemon=%v: info (-want +got):\n%s", tt.name, tt.daemon, diff)
		}
		if len(got.Ident) != 1 {
			t.Fatalf("ident %v, want one number", got.Ident)
		}
		if tt.name == "" && got.Name != "Process-"+strconv.Itoa(int(got.Ident[0])) {
			t.Errorf("default name %q for ident %v", got.Name, got.Ident)
		}
		if tt.name != "" && got.Name != tt.name {
			t.Errorf("name %q, want %q", got.Name, tt.name)
		}
	}
}

// Process.Env overrides the parent's environment, the last of duplicate
// keys winning; the rest of the parent's environment is the child's.
func testEnv(t *testing.T, e *env) {
	t.Setenv("PROCESSTEST_KEEP", "kept")
	t.Setenv("PROCESSTEST_OVER", "parent's")
	keys := []string{"PROCESSTEST_KEEP", "PROCESSTEST_OVER", "PROCESSTEST_NEW", "PROCESSTEST_DUP", "PROCESSTEST_EMPTY", "PROCESSTEST_NONE"}
	a, b := pipe(t)
	p := e.start(t, &process.Process{Func: fnEnv, Args: []any{keys, b}, Env: []string{
		"PROCESSTEST_OVER=child's", "PROCESSTEST_NEW=new", "PROCESSTEST_DUP=first", "PROCESSTEST_DUP=second", "PROCESSTEST_EMPTY=",
	}})
	b.Close()
	var got []string
	recv(t, a, &got)
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	want := []string{"kept", "child's", "new", "second", "", "<unset>"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("child's environment (-want +got):\n%s", diff)
	}
	if v := os.Getenv("PROCESSTEST_OVER"); v != "parent's" {
		t.Fatalf("the parent's PROCESSTEST_OVER changed to %q", v)
	}
}

// The child's working directory is the parent's at Start, not at some
// earlier time: relative paths mean the same in both.
func testWorkingDir(t *testing.T, e *env) {
	// A Starter that prepares processes ahead of time does so in the old
	// directory.
	if err := e.start(t, fnEmpty.Process()).Wait(); err != nil {
		t.Fatal(err)
	}
	e.warm(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "marker"), []byte("here"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	want, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	a, b := pipe(t)
	p := e.start(t, fnCwd.Process("marker", b))
	b.Close()
	var got [2]string
	if err := a.Recv(ctxT(t), &got); err != nil {
		t.Fatalf("no report from the child (%v); it says: %v", err, p.Wait())
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if got != [2]string{want, "here"} {
		t.Fatalf("child's working directory and ./marker: %q, want %q", got, [2]string{want, "here"})
	}
}

// Stdin, stdout and stderr: readers and writers through pipes (one for
// both when Stdout and Stderr are the same writer), an *os.File as it is.
func testStdio(t *testing.T, e *env) {
	var out, errb bytes.Buffer
	p := e.start(t, &process.Process{Func: fnStdio, Stdin: strings.NewReader("hi\n"), Stdout: &out, Stderr: &errb})
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "out:HI\n" || errb.String() != "err:HI\n" {
		t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
	}
	// One writer for both: one pipe, so the writes do not race and keep
	// the child's order.
	var both bytes.Buffer
	p = e.start(t, &process.Process{Func: fnStdio, Stdin: strings.NewReader("hi\n"), Stdout: &both, Stderr: &both})
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if both.String() != "out:HI\nerr:HI\n" {
		t.Fatalf("stdout and stderr to one writer: %q", both.String())
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := f.WriteString("file\n"); err != nil {
		t.Fatal(err)
	}
	p = e.start(t, &process.Process{Func: fnStdio, Stdin: in, Stdout: f, Stderr: f})
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(f.Name())
	if string(b) != "file\nout:FILE\nerr:FILE\n" {
		t.Fatalf("file got %q", b)
	}
}

// A child sees only the fds it was given (TestCloseFds): not a descriptor
// the parent opened without close-on-exec, before or after the Starter
// started anything; and its stdin is /dev/null (TestStdinBadfiledescriptor).
func testChildFDs(t *testing.T, e *env) {
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
	// A Conn's duplicate (close-on-exec), made by MultiprocHandle.
	secret, _ := pipe(t)
	files, _, err := secret.MultiprocHandle()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		defer f.Close()
	}
	target, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(files[0].Fd())))
	secrets = append(secrets, target)
	mkSecret()
	// A Starter that prepares processes ahead of time does so with the
	// first secrets open; the child comes from one of them.
	if err := e.start(t, fnEmpty.Process()).Wait(); err != nil {
		t.Fatal(err)
	}
	e.warm(t)
	mkSecret()

	a, b := pipe(t)
	p := e.start(t, fnFDs.Process(b))
	b.Close()
	var rep fdReport
	recv(t, a, &rep)
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Targets {
		for _, s := range secrets {
			if strings.HasSuffix(l, " -> "+s) {
				t.Fatalf("child sees the parent's %s: %v", s, rep.Targets)
			}
		}
	}
	if rep.Stdin != "/dev/null" || rep.StdinN != 0 || !rep.StdinEOF {
		t.Fatalf("stdin %+v", rep)
	}
	// At most: 0-2; the Conn's two pipe fds and its eventfd; the status
	// socket; the runtime's epoll, its eventfd and the cgroup files it
	// may keep open; what the Starter had open in the process before the
	// request (closing) and the /proc/self/fd listing.
	if len(rep.Targets) > 14 {
		t.Fatalf("child has %d fds: %v", len(rep.Targets), rep.Targets)
	}
}

// Starting and reaping children of every kind, with a Starter made and
// closed for the round, leaves the parent's descriptor table as it was,
// round after round. (Within a round a Starter may hold descriptors for
// processes it prepares in the background: only its Close must give them
// back.)
func testFDsConstant(t *testing.T, e *env) {
	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	round := func() {
		s, closeS, err := e.m.New()
		if err != nil {
			t.Fatal(err)
		}
		a, b, err := ipc.Pipe(true)
		if err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		ps := []*process.Process{
			fnEmpty.Process(),
			fnFail.Process("x"),
			{Func: fnStdio, Stdin: strings.NewReader("y"), Stdout: &out, Stderr: &errb},
			fnEcho.Process(b),
		}
		for _, p := range ps {
			startWith(t, s, p)
		}
		b.Close()
		a.Close()
		for _, p := range ps {
			p.Wait()
		}
		if err := closeS(); err != nil {
			t.Fatal(err)
		}
	}
	round() // the first round may open what lives as long as the process
	var counts []int
	for range 3 {
		round()
		counts = append(counts, count())
	}
	if counts[0] != counts[1] || counts[1] != counts[2] {
		t.Fatalf("open descriptors after each round: %v", counts)
	}
}

// A handle registered with RegisterInherited reaches the child, which
// gets it once.
const inheritKey = "processtest.inherited"

var inheritConn atomic.Pointer[ipc.Conn]

func init() {
	starter.RegisterInherited(inheritKey, func() ([]*os.File, []byte, error) {
		c := inheritConn.Load()
		if c == nil {
			return nil, nil, nil
		}
		return c.MultiprocHandle()
	})
}

func testInheritedHandles(t *testing.T, e *env) {
	ctx := ctxT(t)
	r, w, err := ipc.Pipe(false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	inheritConn.Store(w)
	a, b := pipe(t)
	p := e.start(t, fnInherited.Process(b))
	inheritConn.Store(nil)
	w.Close()
	b.Close()
	got, err := r.RecvBytes(ctx)
	if err != nil || string(got) != "via inherited" {
		t.Fatalf("inherited conn: %q %v", got, err)
	}
	var s string
	recv(t, a, &s)
	if s != "ok again=false" {
		t.Fatalf("child: %q", s)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := starter.Inherited(inheritKey); ok {
		t.Fatal("Inherited in the main process")
	}
	// Without the handle, the child gets none.
	a, b = pipe(t)
	p = e.start(t, fnInherited.Process(b))
	b.Close()
	recv(t, a, &s)
	if s != "none" {
		t.Fatalf("child without the handle: %q", s)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}
