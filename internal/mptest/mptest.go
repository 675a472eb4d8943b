// SPDX-License-Identifier: Apache-2.0

// Package mptest holds the test helpers that multiproc's modules share:
// a helper-process dispatcher for tests that need a real child process
// without the process package, and leak checks for goroutines, file
// descriptors, child processes and /dev/shm entries.
//
// It is imported from _test.go files, and by process/processtest, the
// conformance suite for Starters, which is test code in a normal package.
package mptest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// EnvHelper names the helper a re-executed test binary should run.
const EnvHelper = "MPTEST_HELPER"

// LeakCeiling bounds how long the leak checks wait for goroutines, file
// descriptors and child processes to go away after a test (a pool's
// reader goroutines, a reaped worker): a generous ceiling, so that a slow,
// loaded machine does not turn cleanup that is merely late into a leak.
// It costs nothing when nothing leaks.
const LeakCeiling = 30 * time.Second

var helpers = map[string]func(){}

// RegisterHelper registers fn to run in a child started by HelperCmd. Call
// it from a package-level var or init, so that the child has it too.
func RegisterHelper(name string, fn func()) bool {
	if _, dup := helpers[name]; dup {
		panic("mptest: helper " + name + " registered twice")
	}
	helpers[name] = fn
	return true
}

// Main runs the helper named by EnvHelper and exits, or else runs the
// tests and checks that they leaked no goroutine. Call it from TestMain:
//
//	func TestMain(m *testing.M) { mptest.Main(m) }
//
// It is goleak.VerifyTestMain with a longer wait: goleak alone gives
// goroutines that are still ending about a second, LeakCeiling here.
func Main(m *testing.M, opts ...goleak.Option) {
	if name := os.Getenv(EnvHelper); name != "" {
		RunHelper(name)
	}
	code := m.Run()
	if code == 0 {
		err := goleak.Find(opts...)
		for deadline := time.Now().Add(LeakCeiling); err != nil && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			err = goleak.Find(opts...)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: Errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// RunHelper runs the named helper and exits 0 when it returns.
func RunHelper(name string) {
	fn, ok := helpers[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "mptest: no helper %q\n", name)
		os.Exit(2)
	}
	fn()
	os.Exit(0)
}

// HelperCmd returns a command that re-executes the test binary as the
// named helper, with args available through os.Args[1:] after "--".
func HelperCmd(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), EnvHelper+"="+name)
	cmd.Stderr = os.Stderr
	return cmd
}

// HelperArgs returns the arguments given to HelperCmd.
func HelperArgs() []string {
	if i := slices.Index(os.Args, "--"); i >= 0 {
		return os.Args[i+1:]
	}
	return nil
}

// openFDs lists this process's open file descriptors. The listing
// includes the descriptor that reads /proc/self/fd itself, closed by the
// time its link is read; a descriptor whose link cannot be read is one
// closed meanwhile and is left out. Recording the directory's own
// descriptor at a test's start hid a real one that took its number later
// (and the directory's, one higher at the end, was reported as "5 -> ").
func openFDs() map[int]string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	fds := map[int]string{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue
		}
		fds[n] = target
	}
	return fds
}

// CheckFDs fails the test if, at its end, file descriptors are open that
// were not open at the start. Descriptors the Go runtime opens lazily
// (epoll, its wake-up eventfd/pipe) are ignored. Not for parallel tests.
func CheckFDs(t testing.TB) {
	t.Helper()
	before := openFDs()
	t.Cleanup(func() {
		var leaked []string
		deadline := time.Now().Add(LeakCeiling)
		for {
			leaked = leaked[:0]
			for fd, target := range openFDs() {
				if _, ok := before[fd]; ok {
					continue
				}
				if strings.HasPrefix(target, "anon_inode:[eventpoll]") || strings.HasPrefix(target, "anon_inode:[eventfd]") {
					continue
				}
				leaked = append(leaked, fmt.Sprintf("%d -> %s", fd, target))
			}
			// A closed pipe/socket can take a moment to disappear while a
			// finalizer or a goroutine that owns it finishes.
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(leaked) > 0 {
			slices.Sort(leaked)
			t.Errorf("mptest: leaked file descriptors:\n  %s", strings.Join(leaked, "\n  "))
		}
	})
}

// Children lists the pids of this process's children (zombies included).
func Children() []int {
	self := os.Getpid()
	var kids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 {
			if ppid, _ := strconv.Atoi(f[1]); ppid == self {
				kids = append(kids, pid)
			}
		}
	}
	return kids
}

// CheckChildren fails the test if it leaves child processes behind
// (running or unreaped). Not for parallel tests.
func CheckChildren(t testing.TB) {
	t.Helper()
	before := Children()
	t.Cleanup(func() {
		var extra []int
		deadline := time.Now().Add(LeakCeiling)
		for {
			extra = extra[:0]
			for _, pid := range Children() {
				if !slices.Contains(before, pid) {
					extra = append(extra, pid)
				}
			}
			if len(extra) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(extra) > 0 {
			t.Errorf("mptest: leaked child processes: %v", extra)
		}
	})
}

// ShmEntries lists the names in /dev/shm.
func ShmEntries() []string {
	ents, _ := os.ReadDir("/dev/shm")
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// CheckShm fails the test if it leaves new entries in /dev/shm whose names
// start with one of prefixes (all new entries if none is given). Not for
// parallel tests.
func CheckShm(t testing.TB, prefixes ...string) {
	t.Helper()
	before := ShmEntries()
	t.Cleanup(func() {
		var extra []string
		deadline := time.Now().Add(5 * time.Second)
		for {
			extra = extra[:0]
			for _, n := range ShmEntries() {
				if slices.Contains(before, n) {
					continue
				}
				if len(prefixes) == 0 || slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(n, p) }) {
					extra = append(extra, n)
				}
			}
			if len(extra) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(extra) > 0 {
			// Packages' tests run in parallel: an entry that a process
			// outside this test's tree has mapped or open is that process's,
			// not a leak of ours.
			held := heldOutsideTree()
			extra = slices.DeleteFunc(extra, func(n string) bool { return held[n] })
		}
		if len(extra) > 0 {
			t.Errorf("mptest: leaked /dev/shm entries: %v", extra)
		}
	})
}

// tree returns this process and its descendants.
func tree() map[int]bool {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(s[i+1:]); len(f) > 1 {
			parent[pid], _ = strconv.Atoi(f[1])
		}
	}
	in := map[int]bool{os.Getpid(): true}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if !in[pid] && in[pp] {
				in[pid], changed = true, true
			}
		}
	}
	return in
}

// heldOutsideTree returns the /dev/shm names that processes outside this
// process's tree have mapped or open.
func heldOutsideTree() map[string]bool {
	mine := tree()
	held := map[string]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || mine[pid] {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "maps")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if i := strings.Index(line, "/dev/shm/"); i >= 0 {
					name := strings.TrimSuffix(line[i+len("/dev/shm/"):], " (deleted)")
					held[name] = true
				}
			}
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join("/proc", e.Name(), "fd", fd.Name())); err == nil {
				if name, ok := strings.CutPrefix(target, "/dev/shm/"); ok {
					held[name] = true
				}
			}
		}
	}
	return held
}

// Python returns the python3 to use for interop tests, honouring
// MPTEST_PYTHON, or skips the test when none is installed. Under CI
// (CI=true) a missing python3 fails the test instead: CI claims to run
// the interop tests.
func Python(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MPTEST_PYTHON"); p != "" {
		return p
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		if InCI() {
			t.Fatal("python3 not installed, and CI=true: the interop tests must run")
		}
		t.Skip("python3 not installed; interop test skipped")
	}
	return p
}

// InCI reports whether the tests run under CI (CI=true), where an
// interop test fails rather than skips when what it needs is missing.
func InCI() bool { return os.Getenv("CI") == "true" }

// CIPythonVersions are the pyenv versions (PYENV_VERSION) the interop
// tests run against; under CI each must be installed.
var CIPythonVersions = []string{"3.12.1", "3.13.0"}

// RequirePythonVersions fails the test under CI when a version of
// CIPythonVersions is not installed through pyenv (unless MPTEST_PYTHON
// names the one python to use). Outside CI it does nothing: the tests
// use what is there.
func RequirePythonVersions(t testing.TB) {
	t.Helper()
	if !InCI() || os.Getenv("MPTEST_PYTHON") != "" {
		return
	}
	have := PythonVersions()
	for _, v := range CIPythonVersions {
		if !slices.Contains(have, v) {
			t.Fatalf("CPython %s not installed through pyenv (have %v), and CI=true: the interop tests must run against it", v, have)
		}
	}
}

// PythonVersions returns the CPython versions available through pyenv
// (for example "3.12.1"), so interop tests can run against each.
func PythonVersions() []string {
	out, err := exec.Command("pyenv", "versions", "--bare").Output()
	if err != nil {
		return nil
	}
	var vs []string
	for _, l := range strings.Fields(string(out)) {
		if strings.HasPrefix(l, "3.") {
			vs = append(vs, l)
		}
	}
	return vs
}
