// SPDX-License-Identifier: Apache-2.0

package syncprim

import "errors"

var (
	// ErrOwnerDead is returned, together with the lock, to the process that
	// acquires a Lock or RLock whose holder died while holding it (the
	// EOWNERDEAD of a robust pthread mutex). The caller holds the lock; the
	// data it protects may be half-updated: repair it, or give up, then
	// Release as usual. The lock itself is consistent and usable.
	ErrOwnerDead = errors.New("syncprim: previous owner died holding the lock")

	// ErrNotHeld is returned by Release of a Lock or RLock that the calling
	// process does not hold (CPython: "semaphore or lock released too many
	// times"), and by Condition methods called without holding its lock.
	ErrNotHeld = errors.New("syncprim: lock not held by the caller")

	// ErrOverRelease is returned by Release of a BoundedSemaphore already at
	// its initial value, or of a Semaphore at MaxSemaphoreValue.
	ErrOverRelease = errors.New("syncprim: released too many times")

	// ErrBrokenBarrier is returned by Barrier.Wait when the barrier is
	// broken or reset while waiting, or breaks because a party's wait timed
	// out or was cancelled, or a party's action failed.
	ErrBrokenBarrier = errors.New("syncprim: broken barrier")

	// ErrClosed is returned by methods of a primitive after Close.
	ErrClosed = errors.New("syncprim: closed")

	// ErrTooManyWaiters is returned by Condition.Wait when every waiter slot
	// of the condition is taken (see MaxWaiters).
	ErrTooManyWaiters = errors.New("syncprim: too many waiters on condition")

	// ErrBadHandle is returned when attaching or opening something that is
	// not the expected primitive (wrong kind, size or version).
	ErrBadHandle = errors.New("syncprim: bad handle")
)
