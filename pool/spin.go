// SPDX-License-Identifier: Apache-2.0

// Polling a connection's descriptor while spinning, on both sides of the
// pipe (parent_handoff.go, worker_process.go).

package pool

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readable reports whether fd is readable (or hung up), without
// blocking. Like schedYield it is a raw system call.
func readable(fd int) bool {
	pfd := unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	n, _, errno := syscall.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1,
		uintptr(unsafe.Pointer(&zeroTimeout)), 0, 0, 0)
	return errno == 0 && n > 0
}

var zeroTimeout unix.Timespec

// spinPoll polls fd (without blocking) until it is readable or d has
// passed, and reports whether it became readable. Between two polls it
// calls sched_yield, which hands the CPU to any runnable thread first
// (the peer process, when it shares this CPU): the spin takes a CPU only
// while nothing else wants it, and never longer than d.
func spinPoll(fd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		if readable(fd) {
			return true
		}
		schedYield()
		if i%4 == 3 && time.Now().After(deadline) {
			return false
		}
	}
}
