// SPDX-License-Identifier: Apache-2.0

package process_test

import (
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
)

// The helper prints what a child process counts: its own CPUs, then the
// host's.
var _ = mptest.RegisterHelper("process.cpucounts", func() {
	println(process.CPUCount(), process.HostCPUCount())
})

// HostCPUCount is the machine's count of online CPUs, as glibc's
// sysconf(_SC_NPROCESSORS_ONLN) (getconf) and Python's os.cpu_count()
// report it, and never below the process's own count.
func TestHostCPUCount(t *testing.T) {
	host := process.HostCPUCount()
	if host < 1 || host < process.CPUCount() {
		t.Fatalf("HostCPUCount %d, CPUCount %d", host, process.CPUCount())
	}
	out, err := exec.Command("getconf", "_NPROCESSORS_ONLN").Output()
	if err != nil {
		t.Skipf("getconf: %v", err)
	}
	if want, _ := strconv.Atoi(strings.TrimSpace(string(out))); host != want {
		t.Fatalf("HostCPUCount %d, getconf _NPROCESSORS_ONLN %d", host, want)
	}
	out, err = exec.Command(mptest.Python(t), "-c", "import os; print(os.cpu_count())").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := strconv.Atoi(strings.TrimSpace(string(out))); host != want {
		t.Fatalf("HostCPUCount %d, Python's os.cpu_count() %d", host, want)
	}
}

// A child whose affinity mask holds one CPU counts one CPU of its own
// and all of the host's: the two counts differ as Python's
// os.process_cpu_count and os.cpu_count do.
func TestCPUCountAffinityChild(t *testing.T) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Skip(err)
	}
	first := -1
	for i := range 1024 {
		if all.IsSet(i) {
			first = i
			break
		}
	}
	type result struct {
		out []byte
		err error
	}
	cmd := mptest.HelperCmd(t, "process.cpucounts")
	cmd.Stderr = nil
	done := make(chan result, 1)
	go func() {
		// The child inherits the mask of the thread that forks it. The
		// thread is locked and never unlocked, so it ends with this
		// goroutine and its narrowed mask serves nothing else.
		runtime.LockOSThread()
		var one unix.CPUSet
		one.Set(first)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			done <- result{err: err}
			return
		}
		out, err := cmd.CombinedOutput()
		done <- result{out, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("child: %v\n%s", r.err, r.out)
	}
	t.Logf("child: %s", r.out)
	f := strings.Fields(string(r.out))
	if len(f) != 2 {
		t.Fatalf("child printed %q", r.out)
	}
	if f[0] != "1" {
		t.Fatalf("CPUCount in a child bound to one CPU: %s, want 1", f[0])
	}
	if want := strconv.Itoa(process.HostCPUCount()); f[1] != want {
		t.Fatalf("HostCPUCount in the child: %s, want %s (the parent's)", f[1], want)
	}
}
