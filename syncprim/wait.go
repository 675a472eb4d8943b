// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/multiproc/multiproc/syncprim/internal/futex"
)

// Liveness checking of a lock's owner while waiting: the first check comes
// after livenessFirst, then the interval doubles up to livenessMax, so a
// waiter notices a dead owner within livenessMax and a healthy wait costs
// a handful of extra wake-ups per second.
const (
	livenessFirst = 20 * time.Millisecond
	livenessMax   = 250 * time.Millisecond
)

// sleep waits on the futex word seq while it holds s: until a wake-up,
// ctx's deadline, or capd (> 0) elapses. It returns timedOut when capd
// elapsed, and ctx's error when the context ended. A wake-up, a changed
// word or a signal return (false, nil): the caller re-checks its condition.
func sleep(ctx context.Context, seq *uint32, s uint32, capd time.Duration) (timedOut bool, err error) {
	timeout := futex.Forever
	dl, hasDL := ctx.Deadline()
	if hasDL {
		d := time.Until(dl)
		if d <= 0 {
			return false, ctxErr(ctx)
		}
		timeout = d
	}
	if capd > 0 && (timeout < 0 || capd < timeout) {
		timeout = capd
	}
	switch err := futex.Wait(seq, s, timeout); err {
	case nil:
		return false, ctx.Err()
	case futex.ErrTimeout:
		if hasDL && !time.Now().Before(dl) {
			return false, ctxErr(ctx)
		}
		if e := ctx.Err(); e != nil {
			return false, e
		}
		return true, nil
	default:
		return false, err
	}
}

// ctxErr returns ctx.Err(), or DeadlineExceeded when the deadline has
// passed but the context's timer has not fired yet.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return context.DeadlineExceeded
}

// wakeOnDone arranges for waiters sleeping on seq to wake when ctx ends
// (bumping seq, so a waiter that read it before cannot go to sleep), and
// returns the function that cancels the arrangement. Bumping seq wakes
// other waiters of the same primitive too; they re-check and sleep again.
func wakeOnDone(ctx context.Context, seq *uint32) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, func() {
		atomic.AddUint32(seq, 1)
		futex.WakeAll(seq)
	})
}

// bump advances seq and wakes n of its sleepers.
func bump(seq *uint32, n int) {
	atomic.AddUint32(seq, 1)
	futex.Wake(seq, n)
}

// bumpAll advances seq and wakes all its sleepers.
func bumpAll(seq *uint32) {
	atomic.AddUint32(seq, 1)
	futex.WakeAll(seq)
}
