// SPDX-License-Identifier: Apache-2.0

//go:build linux

package queue

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Shared (not FUTEX_PRIVATE_FLAG) futex operations.
const (
	futexOpWait = 0
	futexOpWake = 1
)

// futexWait sleeps while *addr == val, for at most timeout (< 0: no
// limit). A wake-up, a changed word (EAGAIN) and a signal (EINTR) all
// return nil: callers re-read their state and loop. The call blocks the
// goroutine's thread (the scheduler hands its P to another thread), and
// uses the shared futex operations so that processes mapping the same
// page meet on the same kernel futex.
func futexWait(addr *uint32, val uint32, timeout time.Duration) error {
	var tsp uintptr
	var ts syscall.Timespec
	if timeout >= 0 {
		ts = syscall.NsecToTimespec(int64(timeout))
		tsp = uintptr(unsafe.Pointer(&ts))
	}
	_, _, e := syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexOpWait,
		uintptr(val), tsp, 0, 0)
	switch e {
	case 0, syscall.EAGAIN, syscall.EINTR, syscall.ETIMEDOUT:
		return nil
	default:
		return e
	}
}

// futexWakeAll wakes every waiter sleeping on addr.
func futexWakeAll(addr *uint32) {
	syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexOpWake,
		uintptr(1<<31-1), 0, 0, 0)
}

// releaseMemory gives the pages of b back to the kernel (the memfd keeps
// its size; the range reads as zeros afterwards).
func releaseMemory(b []byte) {
	if len(b) > 0 {
		unix.Madvise(b, unix.MADV_REMOVE)
	}
}
