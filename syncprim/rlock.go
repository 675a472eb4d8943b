// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/multiproc/multiproc/internal/base/futex"
	"github.com/multiproc/multiproc/internal/base/race"
	"github.com/multiproc/multiproc/internal/base/spin"
	"github.com/multiproc/multiproc/shm"
)

// rlockMem is the shared layout of an RLock: a lockMem plus the recursion
// count, which only the holding process touches.
type rlockMem struct {
	lockMem
	count uint32
	_     uint32
}

// RLockSize is the number of bytes an RLock occupies (see InSegment).
const RLockSize = 64

// rlockMu serialises this process's bookkeeping of every RLock (the owner
// word and the count move together under it); it is never held while
// sleeping.
var rlockMu sync.Mutex

// An RLock is a re-entrant lock shared between processes, like Python's
// multiprocessing.RLock: the process holding it may acquire it again, and
// it is free again when released as many times as it was acquired.
//
// Its owner is the process, not the goroutine (Go has no goroutine
// identity): an RLock excludes processes from each other, while all
// goroutines of the holding process share the ownership and its count.
// Between goroutines of one process an RLock therefore does not exclude at
// all; use a sync.Mutex in front of it for that. Release by a process that
// does not hold it returns ErrNotHeld. If the holder dies holding it, the
// next acquirer gets it (with count 1) and ErrOwnerDead, as for Lock.
//
// An RLock must not be copied after first use. The zero RLock is not usable
// (its methods return ErrClosed) until MultiprocAttach. Its methods are safe
// for concurrent use by goroutines and processes; Close is not concurrent
// with anything else.
type RLock struct {
	m    atomic.Pointer[rlockMem]
	reg  *region
	spin spin.Spinner
}

// NewRLock creates an RLock, by default in the package's shared arena.
func NewRLock(opts ...Option) (*RLock, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	r, err := newRegion(RLockSize, &o)
	if err != nil {
		return nil, err
	}
	r.publish(kindRLock)
	l := &RLock{reg: r}
	l.m.Store((*rlockMem)(r.p))
	return l, nil
}

// tryTake takes the lock for this process if it is free or already ours,
// and reports whether it did. v is the owner word to expect when free (0),
// or a dead holder's word to take over.
func (m *rlockMem) tryTake(me uint64, flag uint64) bool {
	rlockMu.Lock()
	defer rlockMu.Unlock()
	v := atomic.LoadUint64(&m.owner)
	if v != 0 && holder(v) == futex.ID(me) {
		atomic.AddUint32(&m.count, 1)
		return true
	}
	if v == 0 && atomic.CompareAndSwapUint64(&m.owner, 0, me|flag) {
		atomic.StoreUint32(&m.count, 1)
		race.Acquire(unsafe.Pointer(m))
		return true
	}
	return false
}

// Acquire blocks until this process holds the lock (once more, if it held
// it already) or ctx ends. It returns nil or ErrOwnerDead with the lock
// held, or ctx's error with the lock's state unchanged.
func (l *RLock) Acquire(ctx context.Context) error {
	m := l.m.Load()
	if m == nil {
		return ErrClosed
	}
	me := uint64(futex.Self())
	if m.tryTake(me, 0) {
		return nil
	}
	return m.acquireSlow(ctx, &l.spin, me)
}

func (m *rlockMem) acquireSlow(ctx context.Context, sp *spin.Spinner, me uint64) error {
	if sp.SpinLock(func() bool { return atomic.LoadUint64(&m.owner) == 0 },
		func() bool { return m.tryTake(me, 0) }) {
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
		if m.tryTake(me, waitersFlag) {
			return nil
		}
		v := atomic.LoadUint64(&m.owner)
		if v == 0 {
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
		if v = atomic.LoadUint64(&m.owner); v != 0 && hw.dead(holder(v), &m.seq, timedOut) && m.takeOver(v, me) {
			return ErrOwnerDead
		}
	}
}

// takeOver replaces the dead holder's word v by this process, count 1.
func (m *rlockMem) takeOver(v, me uint64) bool {
	rlockMu.Lock()
	defer rlockMu.Unlock()
	if atomic.CompareAndSwapUint64(&m.owner, v, me|v&waitersFlag) {
		atomic.StoreUint32(&m.count, 1)
		race.Acquire(unsafe.Pointer(m))
		return true
	}
	return false
}

// TryAcquire acquires the lock if that needs no waiting and reports
// whether it did. A lock whose holder's process is gone is taken too (true
// with ErrOwnerDead; see Lock.TryAcquire for what it can recognise).
func (l *RLock) TryAcquire() (bool, error) {
	m := l.m.Load()
	if m == nil {
		return false, ErrClosed
	}
	me := uint64(futex.Self())
	for {
		if m.tryTake(me, 0) {
			return true, nil
		}
		v := atomic.LoadUint64(&m.owner)
		if v == 0 {
			continue
		}
		if futex.Exists(holder(v)) {
			return false, nil
		}
		if m.takeOver(v, me) {
			return true, ErrOwnerDead
		}
	}
}

// Release releases one level of the lock; the last release frees it. It
// returns ErrNotHeld when this process does not hold it.
func (l *RLock) Release() error {
	m := l.m.Load()
	if m == nil {
		return ErrClosed
	}
	_, err := m.release(false)
	return err
}

// release drops one level (all levels when all is set) and returns how
// many levels were dropped.
func (m *rlockMem) release(all bool) (uint32, error) {
	me := futex.Self()
	rlockMu.Lock()
	v := atomic.LoadUint64(&m.owner)
	c := atomic.LoadUint32(&m.count)
	if holder(v) != me || c == 0 {
		rlockMu.Unlock()
		return 0, ErrNotHeld
	}
	n := uint32(1)
	if all {
		n = c
	}
	if atomic.AddUint32(&m.count, -n) > 0 {
		rlockMu.Unlock()
		return n, nil
	}
	race.Release(unsafe.Pointer(m))
	v = atomic.SwapUint64(&m.owner, 0)
	rlockMu.Unlock()
	if v&waitersFlag != 0 {
		bump(&m.seq, 1)
	}
	return n, nil
}

// restore re-acquires the lock n levels deep (after release(true)).
func (m *rlockMem) restore(ctx context.Context, sp *spin.Spinner, n uint32) error {
	me := uint64(futex.Self())
	err := error(nil)
	if !m.tryTake(me, 0) {
		err = m.acquireSlow(ctx, sp, me)
	}
	if err == nil || err == ErrOwnerDead {
		atomic.AddUint32(&m.count, n-1)
	}
	return err
}

// Lock acquires the lock (sync.Locker), taking over silently from a dead
// holder; it panics when the RLock is closed.
func (l *RLock) Lock() {
	if err := l.Acquire(context.Background()); err != nil && err != ErrOwnerDead {
		panic(err)
	}
}

// Unlock releases one level; it panics with ErrNotHeld when this process
// does not hold the lock.
func (l *RLock) Unlock() {
	if err := l.Release(); err != nil {
		panic(err)
	}
}

// Count returns the recursion level when this process holds the lock, and
// 0 otherwise.
func (l *RLock) Count() int {
	m := l.m.Load()
	if m == nil {
		return 0
	}
	rlockMu.Lock()
	defer rlockMu.Unlock()
	if holder(atomic.LoadUint64(&m.owner)) != futex.Self() {
		return 0
	}
	return int(atomic.LoadUint32(&m.count))
}

// Owner returns the pid of the holding process, or 0 (a snapshot).
func (l *RLock) Owner() int {
	m := l.m.Load()
	if m == nil {
		return 0
	}
	return holder(atomic.LoadUint64(&m.owner)).Pid()
}

// Close releases this process's handle, as Lock.Close does.
func (l *RLock) Close() error { return closeMapped(&l.m, l.reg) }

// MultiprocHandle describes the lock for another process (see
// Lock.MultiprocHandle).
func (l *RLock) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	return describeMapped(&l.m, l.reg, kindRLock)
}

// MultiprocAttach makes the zero RLock l a handle to the lock described by
// MultiprocHandle in another process. It takes ownership of files.
func (l *RLock) MultiprocAttach(files []*os.File, desc []byte) error {
	return attachMapped(&l.m, &l.reg, files, desc, kindRLock, "an RLock")
}

// OpenRLock reaches the RLock created in seg at offset with InSegment.
func OpenRLock(seg *shm.Segment, offset int) (*RLock, error) {
	r, err := openRegion(seg, offset, RLockSize, kindRLock)
	if err != nil {
		return nil, err
	}
	l := &RLock{reg: r}
	l.m.Store((*rlockMem)(r.p))
	return l, nil
}
