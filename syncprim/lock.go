// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/multiproc/multiproc/internal/base/futex"
	"github.com/multiproc/multiproc/internal/base/race"
	"github.com/multiproc/multiproc/internal/base/spin"
	"github.com/multiproc/multiproc/shm"
)

// The owner word of a Lock or RLock is the holder's futex.ID (pid in the
// low 32 bits, start time in the high 32), or 0 when free. Bit 31 of the
// pid half (pids are below 2^22) is the waiters flag: set by a waiter
// before it sleeps, it tells Release to wake one (Drepper's "locked,
// maybe waiters" state).
const waitersFlag = 1 << 31

// lockMem is the shared layout of a Lock (and the mutex inside a
// Barrier): 24 bytes.
type lockMem struct {
	magic uint32
	_     uint32
	owner uint64 // futex.ID of the holder | waitersFlag, 0 when free
	seq   uint32 // futex word: waiters sleep on it, Release bumps it
	_     uint32
}

// LockSize is the number of bytes a Lock occupies (see InSegment).
const LockSize = 64

// A Lock is a mutual exclusion lock shared between processes, like
// Python's multiprocessing.Lock and Go's sync.Mutex. It lives in shared
// memory; the *Lock is this process's handle to it. Goroutines of one
// process exclude each other as goroutines of different processes do.
//
// The lock records its holder: the process (pid and start time). Release
// by another process returns ErrNotHeld (CPython lets any process release a
// Lock; we do not). Any goroutine of the holding process may release it, as
// with sync.Mutex. If the holder dies holding the lock, the next process to
// acquire it gets it with ErrOwnerDead; a waiter that is already asleep
// notices within a few milliseconds, or 20 ms after it began waiting when
// that is later (see "Ownership and robustness" in the package
// documentation).
//
// A Lock must not be copied after first use (copy the *Lock, or hand it to
// another process through MultiprocHandle). The zero Lock is not usable (its
// methods return ErrClosed) until MultiprocAttach. Its methods are safe for
// concurrent use by goroutines and processes; Close is not concurrent with
// anything else.
type Lock struct {
	m    *lockMem // nil once closed
	me   uint64   // futex.Self() of this process: a handle never changes process
	reg  *region
	spin spin.Spinner
}

// NewLock creates a Lock, by default in the package's shared arena.
func NewLock(opts ...Option) (*Lock, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	r, err := newRegion(LockSize, &o)
	if err != nil {
		return nil, err
	}
	r.publish(kindLock)
	l := &Lock{reg: r}
	l.m, l.me = (*lockMem)(r.p), uint64(futex.Self())
	return l, nil
}

// Acquire blocks until the lock is this process's, or ctx ends. It returns
// nil with the lock held; ErrOwnerDead with the lock held, when the
// previous holder died holding it; or ctx's error with the lock's state
// unchanged. An available lock is taken even when ctx is already done.
func (l *Lock) Acquire(ctx context.Context) error {
	if m := l.m; m != nil && atomic.CompareAndSwapUint64(&m.owner, 0, l.me) {
		race.Acquire(unsafe.Pointer(m))
		return nil
	}
	return acquireSlow(l, ctx)
}

func acquireSlow(l *Lock, ctx context.Context) error {
	m := l.m
	if m == nil {
		return ErrClosed
	}
	err := m.lockSlow(ctx, &l.spin)
	if err == nil || err == ErrOwnerDead {
		race.Acquire(unsafe.Pointer(m))
	}
	return err
}

// TryAcquire takes the lock if it is free and reports whether it did
// (Python's acquire(block=False)). A lock whose holder's process is gone
// is taken too (reported as true with ErrOwnerDead); to stay cheap,
// TryAcquire checks only that the holder's pid exists (one kill(pid, 0)),
// so a holder that is a zombie or whose pid was reused is recognised only
// by Acquire.
func (l *Lock) TryAcquire() (bool, error) {
	m := l.m
	if m == nil {
		return false, ErrClosed
	}
	ok, err := m.tryLock()
	if ok {
		race.Acquire(unsafe.Pointer(m))
	}
	return ok, err
}

// Release releases the lock. It returns ErrNotHeld when the calling process
// does not hold it. Release never blocks.
func (l *Lock) Release() error {
	if m := l.m; m != nil {
		race.Release(unsafe.Pointer(m))
		if atomic.CompareAndSwapUint64(&m.owner, l.me, 0) {
			return nil
		}
	}
	return l.releaseSlow()
}

func (l *Lock) releaseSlow() error {
	m := l.m
	if m == nil {
		return ErrClosed
	}
	race.Release(unsafe.Pointer(m))
	return m.unlockSlow()
}

// Lock acquires the lock, waiting as long as it takes: Lock and Unlock make
// a Lock a sync.Locker. A lock taken over from a dead holder is taken
// silently: use Acquire to be told (ErrOwnerDead). Lock panics when the
// Lock is closed.
func (l *Lock) Lock() {
	if err := l.Acquire(context.Background()); err != nil && err != ErrOwnerDead {
		panic(err)
	}
}

// Unlock releases the lock. Like sync.Mutex's, it is a run-time error
// (here a panic with ErrNotHeld) to unlock a Lock this process does not
// hold.
func (l *Lock) Unlock() {
	if err := l.Release(); err != nil {
		panic(err)
	}
}

// Locked reports whether some process holds the lock (a snapshot).
func (l *Lock) Locked() bool {
	m := l.m
	return m != nil && atomic.LoadUint64(&m.owner) != 0
}

// Owner returns the pid of the process holding the lock, or 0 (a snapshot,
// for diagnostics).
func (l *Lock) Owner() int {
	m := l.m
	if m == nil {
		return 0
	}
	return futex.ID(atomic.LoadUint64(&m.owner) &^ waitersFlag).Pid()
}

// Close releases this process's handle: memory the Lock was allocated in
// (from the default arena or InArena) is freed, an attached handle drops
// its mapping. Other processes' handles are unaffected, but memory freed
// to an arena may be reused, so close the creating handle only when no
// process uses the lock any more. Methods called after Close return
// ErrClosed. Close is idempotent and must not run concurrently with other
// methods.
func (l *Lock) Close() error {
	if l.m == nil {
		return nil
	}
	l.m = nil
	return l.reg.close()
}

// MultiprocHandle describes the lock so that another process can attach it
// (MultiprocAttach): the files are duplicates the caller owns and closes.
func (l *Lock) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	if l.m == nil {
		return nil, nil, ErrClosed
	}
	return l.reg.handle(kindLock)
}

// MultiprocAttach makes the zero Lock l a handle to the lock MultiprocHandle
// described in another process. It takes ownership of files.
func (l *Lock) MultiprocAttach(files []*os.File, desc []byte) error {
	if l.m != nil {
		closeFiles(files)
		return fmt.Errorf("%w: MultiprocAttach on a Lock in use", ErrBadHandle)
	}
	r, err := attachRegion(files, desc, kindLock)
	if err != nil {
		return err
	}
	l.reg = r
	l.m, l.me = (*lockMem)(r.p), uint64(futex.Self())
	return nil
}

// holder returns the ID in an owner word.
func holder(v uint64) futex.ID { return futex.ID(v &^ waitersFlag) }

func (m *lockMem) tryLock() (bool, error) {
	me := uint64(futex.Self())
	for {
		v := atomic.LoadUint64(&m.owner)
		if v == 0 {
			if atomic.CompareAndSwapUint64(&m.owner, 0, me) {
				return true, nil
			}
			continue
		}
		if !futex.Exists(holder(v)) {
			if atomic.CompareAndSwapUint64(&m.owner, v, me|v&waitersFlag) {
				return true, ErrOwnerDead
			}
			continue
		}
		return false, nil
	}
}

// lockSlow is the contended path of Acquire: spin, then sleep on seq with
// the waiters flag set, checking the holder's liveness when a sleep lasts.
func (m *lockMem) lockSlow(ctx context.Context, sp *spin.Spinner) error {
	me := uint64(futex.Self())
	if sp.SpinLock(func() bool { return atomic.LoadUint64(&m.owner) == 0 },
		func() bool { return atomic.CompareAndSwapUint64(&m.owner, 0, me) }) {
		return nil
	}
	var stop func() bool
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	var hw holderWatch
	defer hw.stop()
	for {
		s := atomic.LoadUint32(&m.seq)
		v := atomic.LoadUint64(&m.owner)
		if v == 0 {
			// Taken from the slow path, the lock keeps the waiters flag:
			// others may still sleep.
			if atomic.CompareAndSwapUint64(&m.owner, 0, me|waitersFlag) {
				return nil
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			m.leave()
			return err
		}
		if v&waitersFlag == 0 && !atomic.CompareAndSwapUint64(&m.owner, v, v|waitersFlag) {
			continue
		}
		if stop == nil && ctx.Done() != nil {
			stop = wakeOnDone(ctx, &m.seq)
			continue
		}
		timedOut, err := sleep(ctx, &m.seq, s, hw.timeout())
		if err != nil {
			m.leave()
			return err
		}
		if v = atomic.LoadUint64(&m.owner); v != 0 && hw.dead(holder(v), &m.seq, timedOut) {
			if atomic.CompareAndSwapUint64(&m.owner, v, me|waitersFlag) {
				return ErrOwnerDead
			}
		}
	}
}

// leave runs when a waiter gives up: it may have consumed the wake-up that
// a Release meant for another sleeper, so pass it on — wake one when the
// lock is free, or make sure the holder's Release wakes one.
func (m *lockMem) leave() {
	for {
		v := atomic.LoadUint64(&m.owner)
		if v == 0 {
			bump(&m.seq, 1)
			return
		}
		if v&waitersFlag != 0 || atomic.CompareAndSwapUint64(&m.owner, v, v|waitersFlag) {
			return
		}
	}
}

func (m *lockMem) unlockSlow() error {
	me := futex.Self()
	for {
		v := atomic.LoadUint64(&m.owner)
		if holder(v) != me {
			return ErrNotHeld
		}
		if atomic.CompareAndSwapUint64(&m.owner, v, 0) {
			if v&waitersFlag != 0 {
				bump(&m.seq, 1)
			}
			return nil
		}
	}
}

func (m *lockMem) heldByMe() bool { return holder(atomic.LoadUint64(&m.owner)) == futex.Self() }

// OpenLock reaches the Lock that NewLock created in seg at offset with
// InSegment, typically in a named segment opened by an unrelated process.
// Close does not close seg.
func OpenLock(seg *shm.Segment, offset int) (*Lock, error) {
	r, err := openRegion(seg, offset, LockSize, kindLock)
	if err != nil {
		return nil, err
	}
	l := &Lock{reg: r}
	l.m, l.me = (*lockMem)(r.p), uint64(futex.Self())
	return l, nil
}
