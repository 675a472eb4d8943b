// SPDX-License-Identifier: Apache-2.0

package spin

import (
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	// A build for another system stops in linuxonly with one clear message.
	_ "github.com/multiproc/multiproc/internal/base/linuxonly"
)

// SkipAfterMiss is how many waits a Bounded spin skips after a spin that
// ran out.
const SkipAfterMiss = 16

// Bounded spins for at most a given time, yielding the CPU between
// attempts, and skips the next SkipAfterMiss waits after a spin that ran
// out, so that a waiter of long operations burns at most one spin per that
// many waits. The zero value is ready to use; it is safe for concurrent
// use (its counter is a hint).
type Bounded struct {
	skip atomic.Int32
}

// Spin calls done, yielding the CPU before each call after the first,
// until it returns true or d has passed, and reports whether it did. It
// returns false at once when spinning cannot help (Enabled: done may wait
// for a goroutine of this process) or is being skipped.
func (b *Bounded) Spin(d time.Duration, done func() bool) bool {
	if !Enabled() {
		return false
	}
	return b.spin(d, done)
}

// SpinReadable is Spin until fd is readable (or hung up), for a descriptor
// whose writer is another process (a pipe or socket to a worker process
// or to its parent): that peer runs on another CPU whatever this
// process's GOMAXPROCS, so SpinReadable spins whenever more than one CPU
// is usable (EnabledAcross), also in a process that runs with
// GOMAXPROCS=1, such as a pool's worker. Its attempts are raw system
// calls, so the goroutine keeps its P: with GOMAXPROCS=1 the process's
// other goroutines wait for at most d.
func (b *Bounded) SpinReadable(fd int, d time.Duration) bool {
	if !EnabledAcross() {
		return false
	}
	return b.spin(d, func() bool { return Readable(fd) })
}

func (b *Bounded) spin(d time.Duration, done func() bool) bool {
	if b.skip.Load() > 0 {
		b.skip.Add(-1)
		return false
	}
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		if done() {
			return true
		}
		Yield()
		if i%4 == 3 && time.Now().After(deadline) {
			b.skip.Store(SkipAfterMiss)
			return false
		}
	}
}

// Yield calls sched_yield(2) as a raw system call, which hands the CPU to
// any runnable thread first (the peer, when it shares this CPU). The
// runtime is not told, so sysmon never takes the goroutine's P away while
// the kernel runs another thread (the goroutine would then wait for a P,
// often on another thread). Spins that call it must be bounded by time.
func Yield() { syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }

var zeroTimeout unix.Timespec

// Readable reports whether fd is readable (or hung up), without blocking,
// through a raw ppoll(2).
func Readable(fd int) bool {
	pfd := unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	n, _, errno := syscall.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1,
		uintptr(unsafe.Pointer(&zeroTimeout)), 0, 0, 0)
	return errno == 0 && n > 0
}
