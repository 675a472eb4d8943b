// SPDX-License-Identifier: Apache-2.0

package process

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// procStartTime returns a process's start time in clock ticks after boot
// (/proc/<pid>/stat field 22).
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// comm (field 2) may contain spaces and parentheses: skip to the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("process: bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, errors.New("process: short /proc stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// CPUCount returns the number of CPUs this process may use: the CPUs in
// its affinity mask (sched_getaffinity), further limited by a cgroup CPU
// quota (cgroup v2 cpu.max of the process's cgroup and its ancestors, or
// v1 cpu.cfs_quota_us/cpu.cfs_period_us), rounded up. It is at least 1.
// It is what a pool should size itself by, and its default worker count.
//
// Python 3.13's os.process_cpu_count() sees only the affinity mask, so in
// a container limited to 2 CPUs' worth of time on a 64-CPU host it says
// 64 where CPUCount says 2. HostCPUCount is the count of the whole
// machine (Python's os.cpu_count()).
func CPUCount() int {
	n := runtime.NumCPU() // the affinity mask, read at start-up
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) == nil {
		if c := set.Count(); c > 0 {
			n = c
		}
	}
	if q := cgroupQuota(); q > 0 && q < float64(n) {
		n = int(math.Ceil(q))
	}
	return max(n, 1)
}

// HostCPUCount returns the number of CPUs online on the host, whatever
// this process may use of them (Python's os.cpu_count(): glibc's
// sysconf(_SC_NPROCESSORS_ONLN), read from /sys/devices/system/cpu/online).
// Neither the affinity mask nor a cgroup quota lowers it, so it can be far
// above CPUCount; size worker counts by CPUCount. It is at least 1.
func HostCPUCount() int {
	if b, err := os.ReadFile("/sys/devices/system/cpu/online"); err == nil {
		if n := countCPUList(strings.TrimSpace(string(b))); n > 0 {
			return n
		}
	}
	// No sysfs (some sandboxes): the per-CPU lines of /proc/stat.
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		n := 0
		for line := range strings.Lines(string(b)) {
			if len(line) > 3 && strings.HasPrefix(line, "cpu") && line[3] >= '0' && line[3] <= '9' {
				n++
			}
		}
		if n > 0 {
			return n
		}
	}
	return max(runtime.NumCPU(), 1)
}

// countCPUList counts the CPUs of a kernel cpu list ("0-3,5,7-8"), or
// returns 0 when it does not parse.
func countCPUList(s string) int {
	n := 0
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return 0
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0
			}
		}
		n += b - a + 1
	}
	return n
}

// cgroupQuota returns the CPU quota (CPUs' worth) of this process's cgroup,
// or 0 when there is none.
func cgroupQuota() float64 {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	defer f.Close()
	best := 0.0
	take := func(q float64) {
		if q > 0 && (best == 0 || q < best) {
			best = q
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		path := parts[2]
		switch {
		case parts[0] == "0" && parts[1] == "": // v2
			for p := path; ; p = filepath.Dir(p) {
				take(readCPUMax(filepath.Join("/sys/fs/cgroup", p, "cpu.max")))
				if p == "/" || p == "." {
					break
				}
			}
		case hasController(parts[1], "cpu"): // v1
			for _, dir := range []string{"cpu", "cpu,cpuacct", "cpuacct,cpu"} {
				// In a container the cgroup's path is often the mount's root.
				for _, p := range []string{path, "/"} {
					base := filepath.Join("/sys/fs/cgroup", dir, p)
					quota := readInt(filepath.Join(base, "cpu.cfs_quota_us"))
					period := readInt(filepath.Join(base, "cpu.cfs_period_us"))
					if quota > 0 && period > 0 {
						take(float64(quota) / float64(period))
					}
				}
			}
		}
	}
	return best
}

func hasController(list, c string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == c {
			return true
		}
	}
	return false
}

// readCPUMax parses cgroup v2 cpu.max ("max 100000" or "50000 100000").
func readCPUMax(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	quota, err1 := strconv.ParseFloat(f[0], 64)
	period, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || quota <= 0 || period <= 0 {
		return 0
	}
	return quota / period
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0
	}
	return n
}
