// SPDX-License-Identifier: Apache-2.0

package futex

import (
	"bytes"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// An ID names a process for as long as it lives and afterwards: its pid in
// the low 32 bits and the low 32 bits of its start time (field 22 of
// /proc/<pid>/stat, clock ticks since boot) in the high 32 bits. A pid that
// the kernel reuses gets a different start time, so a dead owner cannot be
// mistaken for a live process that happens to have its pid. Zero is no
// process.
//
// IDs are only comparable between processes in the same pid namespace.
type ID uint64

// Pid returns the process id of id.
func (id ID) Pid() int { return int(uint32(id)) }

var self atomic.Uint64

// Self returns the calling process's ID (computed once).
func Self() ID {
	if v := self.Load(); v != 0 {
		return ID(v)
	}
	return selfSlow()
}

func selfSlow() ID {
	pid := os.Getpid()
	st, _, ok := procStat(pid)
	if !ok {
		// /proc unavailable: fall back to the pid alone.
		st = 0
	}
	id := uint64(uint32(pid)) | uint64(uint32(st))<<32
	self.Store(id)
	return ID(id)
}

// Alive reports whether the process id still runs. A process that exited
// (gone, zombie or dead) or whose pid now belongs to a process with another
// start time is not alive. Alive reads /proc, costing a few microseconds;
// it is meant for waits that have lasted long, not for hot paths.
//
// When /proc/<pid> cannot be read although the pid exists (/proc mounted
// with hidepid, for example), or id carries no start time, Alive falls
// back to Exists: it never declares dead a process it cannot see.
func Alive(id ID) bool {
	if id == 0 {
		return false
	}
	if id == Self() {
		return true
	}
	start := uint32(uint64(id) >> 32)
	st, state, ok := procStat(id.Pid())
	if !ok || start == 0 {
		return Exists(id)
	}
	if state == 'Z' || state == 'X' || state == 'x' {
		return false
	}
	return uint32(st) == start
}

// procStat returns the start time (field 22) and state (field 3) of pid.
func procStat(pid int) (start uint64, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name (field 2) is in parentheses and may contain spaces
	// or parentheses: fields are counted after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 || len(f[0]) == 0 {
		return 0, 0, false
	}
	v, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return v, f[0][0], true
}

// Exists is a cheaper, weaker Alive: it reports false only when no process
// has id's pid (kill(pid, 0) fails with ESRCH). A zombie or a process that
// reused the pid counts as existing.
func Exists(id ID) bool {
	if id == 0 {
		return false
	}
	if id == Self() {
		return true
	}
	return syscall.Kill(id.Pid(), 0) != syscall.ESRCH
}
