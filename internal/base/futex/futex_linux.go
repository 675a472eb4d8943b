// SPDX-License-Identifier: Apache-2.0

package futex

import (
	"syscall"
	"time"
	"unsafe"
)

// Shared futex operations: FUTEX_WAIT and FUTEX_WAKE without
// FUTEX_PRIVATE_FLAG, so that processes mapping the same page meet on the
// same kernel futex.
const (
	opWait = 0
	opWake = 1
)

// Wait sleeps while *addr == val, for at most timeout (Forever: no limit).
// It returns nil when woken, when *addr != val already (EAGAIN) or on a
// signal (EINTR): callers re-read the word and loop. It returns ErrTimeout
// when the timeout elapsed.
//
// The call is a blocking syscall.Syscall6 on the goroutine's thread, so the
// Go scheduler hands the P to another thread while it sleeps.
func Wait(addr *uint32, val uint32, timeout time.Duration) error {
	var tsp uintptr
	var ts syscall.Timespec
	if timeout >= 0 {
		ts = syscall.NsecToTimespec(int64(timeout))
		tsp = uintptr(unsafe.Pointer(&ts))
	}
	_, _, e := syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWait,
		uintptr(val), tsp, 0, 0)
	switch e {
	case 0, syscall.EAGAIN, syscall.EINTR:
		return nil
	case syscall.ETIMEDOUT:
		return ErrTimeout
	default:
		return e
	}
}

// Wake wakes at most n waiters sleeping on addr and returns how many it
// woke. FUTEX_WAKE never blocks, so it goes through syscall.RawSyscall6,
// as the Go runtime's own futex wake-ups do: the scheduler's
// entersyscall/exitsyscall bookkeeping would cost more than the call.
func Wake(addr *uint32, n int) int {
	r, _, e := syscall.RawSyscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWake,
		uintptr(n), 0, 0, 0)
	if e != 0 {
		return 0
	}
	return int(r)
}

// WakeAll wakes every waiter sleeping on addr.
func WakeAll(addr *uint32) int { return Wake(addr, 1<<31-1) }
