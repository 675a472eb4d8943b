// SPDX-License-Identifier: Apache-2.0

// Package spin is multiproc's one spin-then-wait policy. Every wait that
// usually ends within microseconds, because the peer runs on another CPU
// (a lock's holder about to release, a queue's producer, a worker about
// to answer), may spin before it sleeps in the kernel, by one rule:
//
//   - spin only where it can help: where the peer can run while this
//     goroutine spins, unless MULTIPROC_SPIN says "on" or "off". A peer
//     that may be a goroutine of this process (a Spinner's lock holder,
//     the pool's reader goroutine behind a Future) needs more than one
//     usable CPU (the affinity mask at start-up) and GOMAXPROCS > 1
//     (Enabled); a peer that is another process (the writer of a pipe to
//     a worker: Bounded.SpinReadable) needs more than one usable CPU only,
//     whatever this process's GOMAXPROCS (EnabledAcross). With one usable
//     CPU a Spinner yields instead: up to YieldTries sched_yield-and-check
//     attempts, which hand the CPU to the peer (see Spinner.Spin);
//   - never without bound: a Spinner spins at most MaxSpin iterations of
//     a CPU pause hint (about 50 µs), a Bounded spin at most its duration,
//     yielding the CPU between attempts;
//   - stop spinning once it does not pay, and probe now and then so that
//     a change of placement is noticed: a Spinner halves its budget on a
//     miss and stops below a minimum, probing after 1, 2, 4, ... slow
//     paths; a Bounded spin that ran out skips the next SkipAfterMiss
//     waits;
//   - a lock's waiter never competes with a holder that takes the lock
//     back at once: it lets the holder go first (SpinLock).
//
// A Spinner suits waits on shared memory (futex words, queue rings); a
// Bounded spin suits waits on a descriptor (a reply on a connection),
// whose each attempt is a system call: Yield and Readable are raw system
// calls, so the runtime never hands the spinning goroutine's P away.
//
// A connection's receive (package ipc) makes the same kind of
// yield-and-read attempts, on one CPU too, because each Yield hands that
// CPU to the peer, which then answers in the same time slice, cheaper
// than sleeping in poll(2) and being woken. Both stop after a miss for
// the next SkipAfterMiss waits, and MULTIPROC_SPIN=off (Disabled) turns
// them off.
package spin

import (
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// Spin tuning. One iteration is a check plus one PAUSE, about 25 ns on the
// reference machine (a KVM guest), so MaxSpin is about 50 µs: longer than a
// cross-CPU futex hand-off (about 32 µs), so that a probing spin can see a
// peer that was asleep answer.
const (
	MaxSpin  = 2048
	minSpin  = 16
	initSpin = 128
	// maxBackoff bounds the number of slow paths between two probes once
	// spinning has stopped paying.
	maxBackoff = 1024
)

// numCPU is the number of CPUs this process may run on (runtime.NumCPU
// honours the affinity mask at start-up).
var numCPU = runtime.NumCPU()

// EnvSpin names the environment variable that overrides the policy: "off"
// never spins; "on" spins even with one usable CPU (for measurements);
// anything else is automatic.
const EnvSpin = "MULTIPROC_SPIN"

var spinMode = func() int {
	switch os.Getenv(EnvSpin) {
	case "off", "0":
		return -1
	case "on", "1":
		return 1
	}
	return 0
}()

// Disabled reports whether MULTIPROC_SPIN=off asks for no spinning at
// all, including the yield-and-retry attempts that run on one CPU too
// (see the package doc).
func Disabled() bool { return spinMode < 0 }

// Enabled reports whether spinning can help a wait whose peer may be a
// goroutine of this process: never with one usable CPU (taskset to one
// CPU) or GOMAXPROCS=1, where the peer cannot run while we spin;
// MULTIPROC_SPIN overrides it.
func Enabled() bool {
	if spinMode != 0 {
		return spinMode > 0
	}
	return numCPU > 1 && runtime.GOMAXPROCS(0) > 1
}

// EnabledAcross reports whether spinning can help a wait whose peer is
// another process: with more than one usable CPU, whatever this process's
// GOMAXPROCS, because the peer's threads need none of this process's Ps.
// A pool's workers run with GOMAXPROCS=1 and wait for their next task
// this way; with Enabled's rule they would sleep and be woken for every
// task of a caller's Submit-and-Get loop. MULTIPROC_SPIN overrides it.
func EnabledAcross() bool {
	if spinMode != 0 {
		return spinMode > 0
	}
	return numCPU > 1
}

// A Spinner decides how long a waiter spins before it sleeps in the kernel,
// from how recent spins went. The zero value is ready to use. It is
// process-local (it lives in the primitive's Go handle, not in shared
// memory), and safe for concurrent use; its counters are hints, so races
// between goroutines only blur the estimate.
//
// A spin that succeeds raises the budget to about twice what it needed; one
// that fails halves it. Below a minimum, spinning stops, and a waiter
// probes with a full-length spin after 1, 2, 4, ... up to maxBackoff slow
// paths, so that a change of placement (the peer moved to another CPU) is
// noticed while the cost of probing on a shared CPU stays negligible.
type Spinner struct {
	budget atomic.Int32 // iterations for the next spin; 0: spinning is off
	skip   atomic.Int32 // slow paths left before the next probe
	// yieldSkip counts the waits left that skip the yield-and-check
	// attempts of one CPU (yieldSpin) after attempts that missed.
	yieldSkip atomic.Int32
	backoff   atomic.Int32 // current probe interval
	started   atomic.Bool
}

// Spin calls done up to the current budget times, pausing between calls,
// and reports whether done returned true. With one usable CPU it makes up
// to YieldTries yield-and-check attempts instead (see yieldSpin); with
// GOMAXPROCS=1 on several CPUs it returns false at once (the peer runs on
// another CPU, and a yield would hand this one to unrelated work while
// the process's only P waits).
func (s *Spinner) Spin(done func() bool) bool {
	if !Enabled() {
		if numCPU > 1 {
			return false
		}
		return s.yieldSpin(done)
	}
	if !s.started.Load() {
		if s.started.CompareAndSwap(false, true) {
			s.budget.Store(initSpin)
			s.backoff.Store(1)
		}
	}
	b := s.budget.Load()
	probing := false
	if b == 0 {
		if s.skip.Add(-1) > 0 {
			return false
		}
		b, probing = MaxSpin, true
	}
	// The clock is read only from iteration minSpin on: a spin that ends
	// sooner (a lock handed over at once) costs no clock reads, which
	// would be most of its cost.
	var t0 time.Time
	for i := int32(0); i < b; i++ {
		if i == minSpin {
			t0 = time.Now()
		}
		if done() {
			// A spin that took much longer than its iterations should
			// was preempted: the peer ran on this CPU meanwhile, which
			// says nothing good about spinning. Count it as a failure.
			if i > minSpin && time.Since(t0) > time.Duration(2*int64(i-minSpin)*iterNS())+2*time.Microsecond {
				s.failure(b, probing)
			} else {
				s.success(i, probing)
			}
			return true
		}
		pause(1)
	}
	s.failure(b, probing)
	return false
}

// PoliteDelay is how long, in CPU pause hints, a lock's spinning waiter
// that sees the lock free waits before it takes it (see SpinLock).
const PoliteDelay = 32

// SpinLock is Spin for a lock: free reports whether the lock is free, take
// tries to take it. A waiter that sees the lock free waits PoliteDelay
// pause hints and looks again before it takes it. A holder that has taken
// it back by then runs a loop of short critical sections, and a waiter
// that competed with it would only move the lock, and the data it guards,
// between CPUs at nearly every acquisition: each a transfer of cache
// lines, several times the cost of an uncontended acquisition (two
// processes incrementing a counter under a Lock made 40-66M increments a
// second that way, against 98-107M with the delay). SpinLock then stops
// and reports false, and the waiter sleeps until a release wakes it, as a
// futex mutex that never spins does, while the holder runs its loop
// uncontended. A lock released and left alone is taken PoliteDelay pauses
// later than it would be without the delay: under a microsecond (a pause
// is about 25 ns on the reference machine), where a sleeper's wake-up
// costs tens.
func (s *Spinner) SpinLock(free, take func() bool) bool {
	hot := false
	ok := s.Spin(func() bool {
		if !free() {
			return false
		}
		pause(PoliteDelay)
		if !free() {
			hot = true
			return true
		}
		return take()
	})
	return ok && !hot
}

// YieldTries bounds the yield-and-check attempts of a Spinner with one
// usable CPU.
const YieldTries = 8

// yieldSpin is Spin with one usable CPU, where pausing cannot help: the
// peer that will make done true, when it is runnable, waits for this very
// CPU. Each attempt hands it the CPU (Yield) and checks done when the
// kernel gives the CPU back. A peer that was just woken (a semaphore's
// other side, released a moment ago) runs at once and usually answers in
// the same time slice: it releases this side's token, then finds its own
// wait empty and yields or sleeps in turn. That is one system call and
// one switch per hand-off, where a futex sleep costs the sleep, the
// peer's FUTEX_WAKE and the switches; and, the waiter having not
// announced itself yet, the peer's release makes no wake-up call at all.
// With semaphore.pingpong pinned to one CPU, it took the round trip from
// 0.7x to about 1x CPython's (glibc's sem_wait/sem_post, which rely on
// the kernel's wake-up preemption; docs/performance.md). Bounded like a
// Bounded spin: at most YieldTries attempts, and after a miss (no peer
// answered: it was not runnable, or busy for longer) the next
// SkipAfterMiss waits sleep at once. MULTIPROC_SPIN=off turns it off.
func (s *Spinner) yieldSpin(done func() bool) bool {
	if Disabled() {
		return false
	}
	if s.yieldSkip.Load() > 0 {
		s.yieldSkip.Add(-1)
		return false
	}
	for range YieldTries {
		Yield()
		if done() {
			return true
		}
	}
	s.yieldSkip.Store(SkipAfterMiss)
	return false
}

var iterCost atomic.Int64

// iterNS returns the cost of one spin iteration in nanoseconds, measured
// once (the fastest of three runs, so that a preemption does not inflate
// it).
func iterNS() int64 {
	if c := iterCost.Load(); c != 0 {
		return c
	}
	best := int64(1 << 62)
	for r := 0; r < 3; r++ {
		t := time.Now()
		for i := 0; i < 256; i++ {
			pause(1)
		}
		best = min(best, time.Since(t).Nanoseconds()/256)
	}
	best = max(best, 1)
	iterCost.Store(best)
	return best
}

func (s *Spinner) success(i int32, probing bool) {
	want := min(MaxSpin, 2*i+minSpin)
	if probing || want > s.budget.Load() {
		s.budget.Store(want)
	}
	if probing {
		s.backoff.Store(1)
	}
}

func (s *Spinner) failure(b int32, probing bool) {
	nb := b / 2
	if probing || nb < minSpin {
		nb = 0
		bo := min(s.backoff.Load()*2, maxBackoff)
		s.backoff.Store(bo)
		s.skip.Store(bo)
	}
	s.budget.Store(nb)
}
