// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/multiproc/multiproc/internal/base/futex"
)

// Liveness of a lock's holder while waiting. A waiter sleeps at most
// livenessFirst before its first check of the holder (a read of
// /proc/<pid>/stat). If the holder is alive, the waiter arms an exit watch
// (futex.WatchExit: a pidfd in the runtime's poller), which wakes it the
// moment the holder exits, and from then on sleeps livenessMax at a time:
// those wake-ups only compare the owner word (no /proc read) so that a
// lock that changed hands while the waiter slept gets its new holder
// watched. Without pidfds (old kernels, seccomp) the same wake-ups poll
// /proc instead.
const (
	livenessFirst = 20 * time.Millisecond
	livenessMax   = 50 * time.Millisecond
)

// holderWatch is one waiter's view of a lock holder's liveness.
type holderWatch struct {
	w     *futex.Watch // armed on id, once the wait has lasted
	id    futex.ID
	armed bool // past the first check: sleep livenessMax, re-arm on a new holder
}

// timeout is the cap of the next sleep.
func (h *holderWatch) timeout() time.Duration {
	if h.armed {
		return livenessMax
	}
	return livenessFirst
}

// dead reports whether the holder id, read from the owner word after a
// sleep on seq, has died. timedOut says the sleep reached its cap.
func (h *holderWatch) dead(id futex.ID, seq *uint32, timedOut bool) bool {
	if id == futex.Self() {
		return false // another goroutine of this process holds it
	}
	switch {
	case h.armed && h.id == id && h.w != nil && !h.w.Broken():
		if !h.w.Fired() {
			return false // the kernel will tell
		}
	case h.armed && h.id == id:
		if !timedOut {
			return false // no watch: poll on timeouts only
		}
	case !h.armed && !timedOut:
		return false // a short wait: the first check comes at livenessFirst
	}
	if !futex.Alive(id) {
		return true
	}
	h.stop()
	w, dead := futex.WatchExit(id, seq)
	if dead {
		return true
	}
	h.w, h.id, h.armed = w, id, true
	return false
}

// stop drops the exit watch, if any.
func (h *holderWatch) stop() {
	h.w.Stop()
	h.w = nil
}

// holdersWatch is holderWatch for the many holders of an OwnedSemaphore:
// an exit watch per holder process, armed at the first timed-out sleep.
type holdersWatch struct {
	ws    map[futex.ID]*futex.Watch // nil Watch: cannot watch, poll on timeouts
	seen  map[futex.ID]bool
	armed bool
}

func (h *holdersWatch) timeout() time.Duration {
	if h.armed {
		return livenessMax
	}
	return livenessFirst
}

// sweep runs scan, which calls dead for each holder process; holders no
// longer seen lose their watch.
func (h *holdersWatch) sweep(scan func(dead func(futex.ID) bool), seq *uint32, timedOut bool) {
	if h.ws == nil {
		h.ws, h.seen = map[futex.ID]*futex.Watch{}, map[futex.ID]bool{}
	}
	clear(h.seen)
	scan(func(id futex.ID) bool {
		h.seen[id] = true
		return h.dead(id, seq, timedOut)
	})
	for id, w := range h.ws {
		if !h.seen[id] {
			w.Stop()
			delete(h.ws, id)
		}
	}
	h.armed = true
}

func (h *holdersWatch) dead(id futex.ID, seq *uint32, timedOut bool) bool {
	if id == futex.Self() {
		return false
	}
	w, ok := h.ws[id]
	switch {
	case w != nil && !w.Broken():
		if !w.Fired() {
			return false // the kernel will tell
		}
	case ok && !timedOut:
		return false // no watch: poll on timeouts only
	}
	if ok {
		w.Stop()
		delete(h.ws, id)
	}
	if !futex.Alive(id) {
		return true
	}
	w, dead := futex.WatchExit(id, seq)
	if dead {
		return true
	}
	h.ws[id] = w
	return false
}

func (h *holdersWatch) stop() {
	for id, w := range h.ws {
		w.Stop()
		delete(h.ws, id)
	}
}

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
