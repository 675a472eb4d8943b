// SPDX-License-Identifier: Apache-2.0

// Package syncprim provides synchronisation primitives shared between
// processes: Lock, RLock, Semaphore (and bounded semaphores), Condition,
// Event and Barrier, with the semantics of Python's multiprocessing
// primitives and the robustness that those lack, and OwnedSemaphore, a
// semaphore whose permits are given back when their holder dies.
//
// # Representation
//
// Every primitive is a few 32- and 64-bit words in shared memory (package
// shm), driven by futex(2) with FUTEX_WAIT and FUTEX_WAKE on shared (not
// process-private) futexes. By default a primitive is allocated from a
// package-level anonymous arena (a memfd, freed by the kernel when the last
// process using it exits); InArena, InBlock and InSegment place it
// elsewhere, for example in a named segment that unrelated processes open
// and then reach the primitive with OpenLock, OpenSemaphore, and so on.
//
// A *Lock (*Semaphore, ...) is this process's handle to the shared words.
// Handles pass to child processes through the handle contract of package
// process: MultiprocHandle on the value, MultiprocAttach on a zero value in
// the child. A primitive must not be copied after first use (copy the
// pointer); Close releases a handle.
//
// # Waiting
//
// Every blocking method takes a context.Context. A wait that ends because
// its context ended returns the context's error and leaves the primitive as
// it was (a Lock still held by its holder, a Semaphore's value unchanged);
// the exception is Barrier, where a party giving up breaks the barrier for
// all, as Python's timeouts do. Non-blocking TryAcquire variants never
// wait.
//
// Before sleeping in the kernel a waiter spins briefly, adaptively: the
// spin budget grows when spins succeed and drops to nothing when they fail
// (as when both processes share one CPU, where spinning only delays the
// peer), with rare probes to notice a change. A process restricted to one
// CPU (affinity or GOMAXPROCS=1) never spins; the environment variable
// MULTIPROC_SPIN=off disables spinning, MULTIPROC_SPIN=on enables it even
// then. Sleeps are blocking system calls on the goroutine's thread; the Go
// scheduler runs other goroutines meanwhile.
//
// Locks are not fair, like sync.Mutex in normal mode and POSIX semaphores:
// a releasing process may take the lock straight back, which keeps
// throughput high under contention.
//
// # Memory ordering
//
// As in package sync, across processes: for a Lock or RLock, the n'th
// Release happens before the n+1'th acquisition returns. A Semaphore's
// Release happens before the Acquire it lets through; an Event's Set
// happens before the Wait calls that return because of it; a Condition's
// Notify happens before the Wait it wakes returns; and everything a party
// does before Barrier.Wait happens before every party of that pass returns
// from Wait. (All state changes are sequentially consistent atomic
// operations on the shared words, so plain memory written before them in
// shared memory is visible after them in the other process.)
//
// # Ownership and robustness
//
// A Lock or RLock records its holder: the process, by pid and start time
// (from /proc/<pid>/stat), so that a reused pid cannot pass for a dead
// holder. Go has no goroutine identity, so the owner is the process: any
// goroutine of the holding process may release a Lock (as with
// sync.Mutex), and the goroutines of the holding process share an RLock's
// ownership. Release by another process returns ErrNotHeld.
//
// If the holder dies holding the lock, the next process to acquire it
// gets it together with ErrOwnerDead (like a robust pthread mutex's
// EOWNERDEAD): the lock is held and consistent, the data it protects may
// not be; repair it and continue. A waiter already asleep checks the
// holder's liveness after 20 ms of sleep; if the holder lives, the waiter
// asks the kernel to tell it when the holder exits (a pidfd, watched by
// the Go runtime's poller, which wakes the futex) and sleeps on without
// polling. So a waiter notices a dead holder at the latest 20 ms after it
// began to wait, or a few milliseconds after the death, whichever is
// later. Measured with SIGKILL (TestOwnerDeadSleeper, on a loaded 2-CPU
// machine): 1.0–2.8 ms, median 1.2 ms, for holders killed after the first
// check; at most 15 ms for those killed before it; with the polling used
// before pidfds, up to 250 ms. A lock that changes hands without waking
// the waiter gets its new holder checked and watched within 50 ms, when
// the waiter next wakes (TestOwnerDeadAfterHandOver: 37–49 ms), and a
// kernel without pidfds (before Linux 5.3, or under a seccomp filter)
// falls back to reading /proc every 50 ms. The uncontended path and short
// waits never check.
//
// Semaphores and Events have no owner, so a participant's death is not
// detected (bound waits with contexts), except with an OwnedSemaphore: its
// permits record their holder, and a dead holder's permits are given back
// to the waiters as promptly as a dead lock holder is noticed. A Condition
// frees the slots of waiters whose process is gone; a Barrier party that
// dies while it waits breaks the barrier for the others (see Barrier), and
// a Barrier's action travels to other processes when registered by name
// (RegisterBarrierAction, RegisteredAction).
//
// Processes sharing a primitive must be in the same pid namespace.
//
// # Platforms
//
// Linux only (any architecture). A build for another system stops with one
// message, "multiproc needs Linux", from package internal/base/linuxonly.
package syncprim
