// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/manager"
	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/shm"
	"github.com/multiproc/multiproc/tracker"
)

// trackedHelper runs in a helper process: it creates the named segment
// given as its argument, registers it with its tree's resource tracker
// (which it thereby starts), prints the tracker's pid, and waits for EOF
// on stdin; then it unlinks and unregisters the segment.
var _ = mptest.RegisterHelper("mp.tracked", func() {
	ctx := context.Background()
	name := mptest.HelperArgs()[0]
	seg, err := shm.Create(name, 128, shm.Untracked())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := tracker.Register(ctx, tracker.SharedMemory, name); err != nil {
		seg.Unlink()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(tracker.Pid())
	io.Copy(io.Discard, os.Stdin)
	seg.Unlink()
	seg.Close()
	if err := tracker.Unregister(ctx, tracker.SharedMemory, name); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
})

func TestMain(m *testing.M) {
	process.Init()
	mptest.Main(m)
}

// mpRun runs the mp binary and returns its stdout, stderr and exit code.
func mpRun(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("mp %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// mpOK runs mp and fails the test unless it exits 0 with an empty stderr.
func mpOK(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, errs, code := mpRun(t, bin, args...)
	if code != 0 || errs != "" {
		t.Fatalf("mp %v: exit %d, stderr %q", args, code, errs)
	}
	return out
}

// mpFails runs mp, wants a non-zero exit and exactly one line on stderr
// holding want, and nothing on stdout.
func mpFails(t *testing.T, bin, want string, args ...string) {
	t.Helper()
	out, errs, code := mpRun(t, bin, args...)
	if code == 0 {
		t.Errorf("mp %v: exit 0, want an error", args)
	}
	if strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "mp: ") || !strings.Contains(errs, want) {
		t.Errorf("mp %v: stderr %q, want one line holding %q", args, errs, want)
	}
	if out != "" {
		t.Errorf("mp %v: stdout %q, want nothing", args, out)
	}
}

// lsRow returns the fields of name's row in mp shm ls output, or nil.
func lsRow(out, name string) []string {
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return f
		}
	}
	return nil
}

// TestMPCommands builds mp once and runs its inspection and server
// subcommands as a user would.
func TestMPCommands(t *testing.T) {
	mptest.CheckShm(t, "psm_")
	mptest.CheckChildren(t)
	bin := filepath.Join(t.TempDir(), "mp")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Run("shm ls", func(t *testing.T) { testShmLs(t, bin) })
	t.Run("shm rm", func(t *testing.T) { testShmRm(t, bin) })
	t.Run("shm cat", func(t *testing.T) { testShmCat(t, bin) })
	t.Run("shm cat python list", func(t *testing.T) { testShmCatPython(t, bin) })
	t.Run("manager serve", func(t *testing.T) { testManagerServe(t, bin) })
	t.Run("manager serve generated key", func(t *testing.T) { testManagerServeGenKey(t, bin) })
	t.Run("manager serve publish", func(t *testing.T) { testManagerServePublish(t, bin) })
	t.Run("manager serve flood", func(t *testing.T) { testManagerServeFlood(t, bin) })
	t.Run("manager serve tls", func(t *testing.T) { testManagerServeTLS(t, bin) })
	t.Run("manager serve tls client certificates", func(t *testing.T) { testManagerServeMutualTLS(t, bin) })
	t.Run("manager serve tls bad input", func(t *testing.T) { testManagerServeTLSBadInput(t, bin) })
	t.Run("tracker ls", func(t *testing.T) { testTrackerLs(t, bin) })
	t.Run("bad input", func(t *testing.T) { testBadInput(t, bin) })
}

func testShmLs(t *testing.T, bin string) {
	seg, err := shm.Create("", 4096, shm.Untracked())
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	name := seg.Name()

	row := lsRow(mpOK(t, bin, "shm", "ls"), name)
	if row == nil {
		t.Fatalf("mp shm ls does not list %s", name)
	}
	// NAME KIND SIZE MODE OWNER PIDS: this test process maps it.
	pid := strconv.Itoa(os.Getpid())
	if row[1] != "shm" || row[2] != "4096" || row[3] != "0600" || !strings.Contains(row[4], "("+strconv.Itoa(os.Getuid())+")") ||
		!strings.Contains(","+row[5]+",", ","+pid+",") {
		t.Errorf("row %q: want kind shm, size 4096, mode 0600, uid %d, pid %s among the mappers", row, os.Getuid(), pid)
	}

	// A name without multiproc's or CPython's prefix shows only with --all.
	other, err := shm.Create("mptest-other-"+pid, 100, shm.Untracked())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { other.Unlink(); other.Close() }()
	if lsRow(mpOK(t, bin, "shm", "ls"), other.Name()) != nil {
		t.Errorf("mp shm ls lists %s without --all", other.Name())
	}
	if lsRow(mpOK(t, bin, "shm", "ls", "--all"), other.Name()) == nil {
		t.Errorf("mp shm ls --all does not list %s", other.Name())
	}

	if err := seg.Unlink(); err != nil {
		t.Fatal(err)
	}
	if row := lsRow(mpOK(t, bin, "shm", "ls"), name); row != nil {
		t.Errorf("mp shm ls still lists %s after Unlink: %q", name, row)
	}
}

func testShmRm(t *testing.T, bin string) {
	a, err := shm.Create("", 64, shm.Untracked())
	if err != nil {
		t.Fatal(err)
	}
	b, err := shm.Create("", 64, shm.Untracked())
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	if out := mpOK(t, bin, "shm", "rm", a.Name(), b.Name()); out != "" {
		t.Errorf("mp shm rm printed %q, want nothing", out)
	}
	for _, n := range []string{a.Name(), b.Name()} {
		if _, err := os.Stat("/dev/shm/" + n); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after mp shm rm: %v, want it gone", n, err)
		}
	}
	mpFails(t, bin, a.Name()+": no such segment", "shm", "rm", a.Name())
}

func testShmCat(t *testing.T, bin string) {
	seg, err := shm.Create("", 40, shm.Untracked())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { seg.Unlink(); seg.Close() }()
	copy(seg.Bytes(), "hello, shared world!\x00\x01\x02\xff")
	got := mpOK(t, bin, "shm", "cat", seg.Name(), "--offset", "16", "--length", "10")
	want := "00000010  72 6c 64 21 00 01 02 ff  00 00                    |rld!......|\n0000001a\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mp shm cat --offset 16 --length 10 (-want +got):\n%s", diff)
	}
	got = mpOK(t, bin, "shm", "cat", seg.Name())
	if !strings.HasPrefix(got, "00000000  68 65 6c 6c 6f 2c 20 73  68 61 72 65 64 20 77 6f  |hello, shared wo|\n") ||
		!strings.HasSuffix(got, "00000028\n") || strings.Count(got, "\n") != 4 {
		t.Errorf("mp shm cat: got\n%s", got)
	}
	mpFails(t, bin, "offset 41 outside the segment", "shm", "cat", seg.Name(), "--offset", "41")

	l, err := shm.NewShareableList("", []any{int64(-3), 2.5, true, nil, "héllo", []byte("a\x00b")}, shm.Untracked())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { l.Unlink(); l.Close() }()
	got = mpOK(t, bin, "shm", "cat", "--list", l.Name())
	want = `INDEX  FORMAT    VALUE
0      q         -3
1      d         2.5
2      xxxxxxx?  True
3      xxxxxx?x  None
4      8s        "héllo"
5      8s        b"a\x00b"
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mp shm cat --list (-want +got):\n%s", diff)
	}
	// A segment that is not a ShareableList is an error, not garbage.
	mpFails(t, bin, "shm: ", "shm", "cat", "--list", seg.Name())
}

// testShmCatPython decodes a list that CPython created.
func testShmCatPython(t *testing.T, bin string) {
	py := mptest.Python(t)
	name := "psm_mpe2e" + strconv.Itoa(os.Getpid())
	script := `import sys
from multiprocessing import shared_memory, resource_tracker
l = shared_memory.ShareableList([7, -1.25, False, None, "abc", b"xyz"], name=sys.argv[1])
resource_tracker.unregister(l.shm._name, "shared_memory")  # outlive this process
l.shm.close()
`
	if out, err := exec.Command(py, "-c", script, name).CombinedOutput(); err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	defer mpOK(t, bin, "shm", "rm", name)
	got := mpOK(t, bin, "shm", "cat", "--list", name)
	want := `INDEX  FORMAT    VALUE
0      q         7
1      d         -1.25
2      xxxxxxx?  False
3      xxxxxx?x  None
4      8s        "abc"
5      8s        b"xyz"
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mp shm cat --list of a CPython list (-want +got):\n%s", diff)
	}
}

// serve starts mp manager serve and returns the command and the lines it
// printed up to the hint about stopping it.
func serve(t *testing.T, bin string, args ...string) (*exec.Cmd, []string, io.ReadCloser) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"manager", "serve"}, args...)...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.HasPrefix(sc.Text(), "stop with") {
			return cmd, lines, stdout
		}
	}
	t.Fatalf("mp manager serve ended before it was ready: %q", lines)
	return nil, nil, nil
}

// stopServe sends SIGTERM and wants exit 0 after "manager shut down".
func stopServe(t *testing.T, cmd *exec.Cmd, stdout io.Reader) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(stdout)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("mp manager serve after SIGTERM: %v, want exit 0", err)
	}
	if string(rest) != "manager shut down\n" {
		t.Errorf("mp manager serve printed %q after SIGTERM, want \"manager shut down\\n\"", rest)
	}
}

// useDict connects to the server at addr with key (and opts, such as
// manager.TLS) and sets and gets an item of a new Dict.
func useDict(t *testing.T, network, addr string, key []byte, opts ...manager.Option) {
	t.Helper()
	ctx := context.Background()
	c, err := manager.Connect(ctx, network, addr, append([]manager.Option{manager.Authkey(key)}, opts...)...)
	if err != nil {
		t.Fatalf("manager.Connect(%s, %s): %v", network, addr, err)
	}
	defer c.Close()
	d, err := manager.NewDict[string, int](ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "answer", 42); err != nil {
		t.Fatal(err)
	}
	if v, err := d.Get(ctx, "answer"); err != nil || v != 42 {
		t.Errorf("Dict.Get = %v, %v; want 42, nil", v, err)
	}
}

func testManagerServe(t *testing.T, bin string) {
	dir := t.TempDir()
	sock, keyFile := filepath.Join(dir, "m.sock"), filepath.Join(dir, "key")
	key := []byte("a key shared with the clients")
	if err := os.WriteFile(keyFile, append(key, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, lines, stdout := serve(t, bin, "--addr", sock, "--authkey-file", keyFile)
	if lines[0] != "manager serving on unix "+sock || lines[1] != "authkey read from "+keyFile {
		t.Errorf("first lines %q", lines[:2])
	}
	if !strings.Contains(strings.Join(lines, "\n"), `manager.Connect(ctx, "unix", "`+sock+`"`) {
		t.Errorf("no Go snippet connecting to %s in %q", sock, lines)
	}
	useDict(t, "unix", sock, key)
	_, err := manager.Connect(context.Background(), "unix", sock, manager.Authkey([]byte("wrong")))
	if !errors.Is(err, ipc.ErrAuthentication) {
		t.Errorf("Connect with a wrong key: %v, want ipc.ErrAuthentication", err)
	}
	stopServe(t, cmd, stdout)
	if _, err := os.Stat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket %s after shutdown: %v, want it removed", sock, err)
	}
}

func testManagerServeGenKey(t *testing.T, bin string) {
	cmd, lines, stdout := serve(t, bin, "--addr", "127.0.0.1:0")
	addr, ok := strings.CutPrefix(lines[0], "manager serving on tcp ")
	if !ok || strings.HasSuffix(addr, ":0") {
		t.Fatalf("first line %q, want the tcp address with the port picked", lines[0])
	}
	keyFile, ok := strings.CutPrefix(lines[1], "authkey written to ")
	if !ok {
		t.Fatalf("second line %q, want where the key was written", lines[1])
	}
	info, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("generated key file mode %v, want 0600", info.Mode())
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	useDict(t, "tcp", addr, []byte(strings.TrimSuffix(string(b), "\n")))
	stopServe(t, cmd, stdout)
	if _, err := os.Stat(filepath.Dir(keyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary directory %s after shutdown: %v, want it removed", filepath.Dir(keyFile), err)
	}
}

func testBadInput(t *testing.T, bin string) {
	dir := t.TempDir()
	open := filepath.Join(dir, "key")
	if err := os.WriteFile(open, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"shm", "rm", "a/b"}, `invalid segment name "a/b"`},
		{[]string{"shm", "rm", ".."}, `invalid segment name ".."`},
		{[]string{"shm", "rm"}, "requires at least 1 arg"},
		{[]string{"shm", "cat", "psm_no_such_segment_here"}, "no such file or directory"},
		{[]string{"shm", "cat", "../etc/passwd"}, "invalid segment name"},
		{[]string{"shm", "ls", "extra"}, "unknown command"},
		{[]string{"manager", "serve", "--addr", filepath.Join(dir, "s"), "--authkey-file", open}, "accessible to other users (mode 0644)"},
		{[]string{"manager", "serve", "--addr", filepath.Join(dir, "s"), "--authkey-file", empty}, "is empty"},
		{[]string{"manager", "serve", "--network", "udp"}, `--network "udp": want unix or tcp`},
		{[]string{"manager", "serve", "--no-such-flag"}, "unknown flag"},
	}
	for _, tt := range tests {
		mpFails(t, bin, tt.want, tt.args...)
	}
}

// testTrackerLs: a segment registered with a tracker by another process
// shows in mp tracker ls (and in shm ls's TRACKER column) while it is
// registered, and not once it was unregistered.
func testTrackerLs(t *testing.T, bin string) {
	name := "psm_mpe2etr" + strconv.Itoa(os.Getpid())
	h := mptest.HelperCmd(t, "mp.tracked", name)
	h.Stderr = os.Stderr
	stdin, err := h.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := h.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stdin.Close()
			if err := h.Wait(); err != nil {
				t.Errorf("helper: %v", err)
			}
		}
	}
	defer stop()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper did not report its tracker: %v", err)
	}
	tpid := strings.TrimSpace(line)

	var row []string
	for line := range strings.Lines(mpOK(t, bin, "tracker", "ls")) {
		if f := strings.Fields(line); len(f) == 5 && f[2] == name {
			row = f
		}
	}
	want := []string{tpid, "shared_memory", name, strconv.Itoa(h.Process.Pid), "yes"}
	if diff := cmp.Diff(want, row); diff != "" {
		t.Errorf("mp tracker ls row of %s (-want +got):\n%s", name, diff)
	}
	if row := lsRow(mpOK(t, bin, "shm", "ls"), name); len(row) != 7 || row[6] != tpid {
		t.Errorf("mp shm ls row %q, want tracker %s in the last column", row, tpid)
	}

	stop()
	if out := mpOK(t, bin, "tracker", "ls"); strings.Contains(out, name) {
		t.Errorf("mp tracker ls lists %s after it was unregistered:\n%s", name, out)
	}
}
