// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/multiproc/multiproc/internal/base/futex"
	"github.com/multiproc/multiproc/shm"
)

// A Mutex is the lock of a Condition: a *Lock or an *RLock.
type Mutex interface {
	sync.Locker
	Acquire(ctx context.Context) error
	Release() error
	condLock() condLocker
}

// condLocker is what a Condition needs from its lock.
type condLocker interface {
	held() bool
	releaseAll() (uint32, error)
	restore(ctx context.Context, n uint32) error
	handle() ([]*os.File, []byte, error)
	kind() kind
}

type lockCond struct{ l *Lock }

func (l *Lock) condLock() condLocker { return lockCond{l} }

func (c lockCond) held() bool {
	m := c.l.m
	return m != nil && m.heldByMe()
}
func (c lockCond) releaseAll() (uint32, error) { return 1, c.l.Release() }
func (c lockCond) restore(ctx context.Context, _ uint32) error {
	return c.l.Acquire(ctx)
}
func (c lockCond) handle() ([]*os.File, []byte, error) { return c.l.MultiprocHandle() }
func (c lockCond) kind() kind                          { return kindLock }

type rlockCond struct{ l *RLock }

func (l *RLock) condLock() condLocker { return rlockCond{l} }

func (c rlockCond) held() bool { return c.l.Count() > 0 }
func (c rlockCond) releaseAll() (uint32, error) {
	m := c.l.m.Load()
	if m == nil {
		return 0, ErrClosed
	}
	return m.release(true)
}
func (c rlockCond) restore(ctx context.Context, n uint32) error {
	m := c.l.m.Load()
	if m == nil {
		return ErrClosed
	}
	return m.restore(ctx, &c.l.spin, n)
}
func (c rlockCond) handle() ([]*os.File, []byte, error) { return c.l.MultiprocHandle() }
func (c rlockCond) kind() kind                          { return kindRLock }

// Waiter slot states.
const (
	slotFree      = 0
	slotWaiting   = 1
	slotNotified  = 2
	slotAbandoned = 3 // the waiter gave up (ctx ended)
	slotClaimed   = 4 // being filled in
)

// condMem is the shared layout of a Condition: a 64-byte header, an
// embedded RLock (used when the Condition was made without a lock), then
// one 16-byte slot per possible waiter.
type condMem struct {
	magic    uint32
	nslots   uint32
	tickets  uint32 // next waiter ticket (FIFO order of notification)
	embedded uint32 // 1 when the lock is the RLock at offset 64
}

type condSlot struct {
	state  uint32 // futex word of this waiter
	ticket uint32
	owner  uint64 // futex.ID of the waiting process
}

const (
	condLockOff  = align
	condSlotsOff = 2 * align
	// DefaultMaxWaiters is the number of waiter slots of a Condition made
	// without MaxWaiters.
	DefaultMaxWaiters = 64
)

// ConditionSize returns the number of bytes a Condition with maxWaiters
// slots occupies (see InSegment and MaxWaiters).
func ConditionSize(maxWaiters int) int {
	return roundUp(condSlotsOff + 16*maxWaiters)
}

// MaxWaiters sets how many goroutines (of all processes together) may wait
// on a Condition at once; Wait beyond that returns ErrTooManyWaiters. The
// default is DefaultMaxWaiters.
func MaxWaiters(n int) Option { return func(o *options) { o.maxWaiters = n } }

// A Condition is a condition variable shared between processes, like
// Python's multiprocessing.Condition: waiters hold its lock, Wait releases
// the lock and sleeps until notified, then re-acquires it. Notify(n) wakes
// exactly n waiters (the longest waiting first), or all there are if fewer;
// NotifyAll wakes every waiter. Notify never waits for the woken waiters
// (CPython's does). A Notify happens before the return of the Waits it
// wakes.
//
// Every waiter has a slot in shared memory recording its process; Notify
// skips (and frees) the slots of processes that no longer exist, so a
// waiter that died does not swallow a notification. A waiter that dies is
// otherwise harmless; a lock holder that dies is reported by the lock
// (ErrOwnerDead).
//
// A Condition must not be copied after first use. The zero Condition is not
// usable (its methods return ErrClosed) until MultiprocAttach. Its methods
// are safe for concurrent use by goroutines and processes, with the lock's
// rules (an RLock is shared by the goroutines of its holding process); Close
// is not concurrent with anything else.
type Condition struct {
	m     atomic.Pointer[condMem]
	reg   *region
	lock  Mutex
	lk    condLocker
	slots []condSlot
	// ownLock is set when this handle attached the lock (MultiprocAttach)
	// and so closes it.
	ownLock bool
}

// NewCondition creates a Condition on lock, a *Lock or *RLock; with a nil
// lock it makes its own RLock (Python's default), held in the Condition's
// memory.
func NewCondition(lock Mutex, opts ...Option) (*Condition, error) {
	o := options{maxWaiters: DefaultMaxWaiters}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxWaiters <= 0 || o.maxWaiters > 1<<20 {
		return nil, fmt.Errorf("syncprim: MaxWaiters(%d) out of range", o.maxWaiters)
	}
	r, err := newRegion(ConditionSize(o.maxWaiters), &o)
	if err != nil {
		return nil, err
	}
	m := (*condMem)(r.p)
	m.nslots = uint32(o.maxWaiters)
	if lock == nil {
		m.embedded = 1
		lr := &region{p: unsafe.Add(r.p, condLockOff), size: RLockSize}
		lr.publish(kindRLock)
		rl := &RLock{reg: lr}
		rl.m.Store((*rlockMem)(lr.p))
		lock = rl
	}
	r.publish(kindCondition)
	return newCondition(r, lock), nil
}

func newCondition(r *region, lock Mutex) *Condition {
	m := (*condMem)(r.p)
	c := &Condition{reg: r, lock: lock, lk: lock.condLock()}
	c.slots = unsafe.Slice((*condSlot)(unsafe.Add(r.p, condSlotsOff)), int(m.nslots))
	c.m.Store(m)
	return c
}

// OpenCondition reaches the Condition created in seg at offset with
// InSegment. lock must be the Condition's lock (opened by the caller) when
// it was made with one, and nil when it made its own.
func OpenCondition(seg *shm.Segment, offset int, lock Mutex) (*Condition, error) {
	r, err := openRegion(seg, offset, condSlotsOff, kindCondition)
	if err != nil {
		return nil, err
	}
	m := (*condMem)(r.p)
	r.size = ConditionSize(int(m.nslots))
	if offset > len(seg.Bytes())-r.size {
		return nil, fmt.Errorf("%w: Condition of %d bytes at offset %d", ErrBadHandle, r.size, offset)
	}
	lock, err = condEmbeddedLock(r, lock)
	if err != nil {
		return nil, err
	}
	return newCondition(r, lock), nil
}

func condEmbeddedLock(r *region, lock Mutex) (Mutex, error) {
	m := (*condMem)(r.p)
	if (m.embedded == 1) != (lock == nil) {
		return nil, fmt.Errorf("%w: Condition lock mismatch (embedded %v, lock given %v)", ErrBadHandle, m.embedded == 1, lock != nil)
	}
	if lock != nil {
		return lock, nil
	}
	lr := &region{p: unsafe.Add(r.p, condLockOff), size: RLockSize}
	if err := lr.check(kindRLock); err != nil {
		return nil, err
	}
	rl := &RLock{reg: lr}
	rl.m.Store((*rlockMem)(lr.p))
	return rl, nil
}

// Locker returns the Condition's lock.
func (c *Condition) Locker() Mutex { return c.lock }

// Acquire acquires the Condition's lock (see Lock.Acquire, RLock.Acquire).
func (c *Condition) Acquire(ctx context.Context) error { return c.lock.Acquire(ctx) }

// Release releases the Condition's lock.
func (c *Condition) Release() error { return c.lock.Release() }

// Lock acquires the Condition's lock (sync.Locker).
func (c *Condition) Lock() { c.lock.Lock() }

// Unlock releases the Condition's lock (sync.Locker).
func (c *Condition) Unlock() { c.lock.Unlock() }

// Wait releases the lock, which the calling process must hold
// (ErrNotHeld), sleeps until notified or until ctx ends, and re-acquires
// the lock (regardless of ctx) before it returns. It returns nil when
// notified, ctx's error when ctx ended first (Python's wait returning
// False), or ErrOwnerDead when re-acquiring took the lock over from a dead
// holder (the lock is held in all these cases). With ctx already done it
// returns ctx's error at once, keeping the lock.
func (c *Condition) Wait(ctx context.Context) error {
	m := c.m.Load()
	if m == nil {
		return ErrClosed
	}
	if !c.lk.held() {
		return ErrNotHeld
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sl, err := c.claim(m)
	if err != nil {
		return err
	}
	saved, err := c.lk.releaseAll()
	if err != nil {
		atomic.StoreUint32(&sl.state, slotFree)
		return err
	}
	var (
		stop    = func() bool { return true }
		stopped chan struct{}
	)
	if ctx.Done() != nil {
		stopped = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			defer close(stopped)
			if atomic.CompareAndSwapUint32(&sl.state, slotWaiting, slotAbandoned) {
				futex.Wake(&sl.state, 1)
			}
		})
	}
	var werr error
	for atomic.LoadUint32(&sl.state) == slotWaiting {
		if _, werr = sleep(ctx, &sl.state, slotWaiting, 0); werr != nil {
			atomic.CompareAndSwapUint32(&sl.state, slotWaiting, slotAbandoned)
			break
		}
	}
	if !stop() {
		<-stopped
	}
	notified := atomic.LoadUint32(&sl.state) == slotNotified
	if !notified && werr == nil {
		werr = ctxErr(ctx)
	}
	atomic.StoreUint32(&sl.state, slotFree)
	if err := c.lk.restore(context.WithoutCancel(ctx), saved); err != nil {
		return err
	}
	if notified {
		return nil
	}
	return werr
}

// claim takes a free waiter slot (the lock is held).
func (c *Condition) claim(m *condMem) (*condSlot, error) {
	for pass := 0; pass < 2; pass++ {
		for i := range c.slots {
			sl := &c.slots[i]
			if atomic.CompareAndSwapUint32(&sl.state, slotFree, slotClaimed) {
				atomic.StoreUint64(&sl.owner, uint64(futex.Self()))
				atomic.StoreUint32(&sl.ticket, atomic.AddUint32(&m.tickets, 1))
				atomic.StoreUint32(&sl.state, slotWaiting)
				return sl, nil
			}
		}
		// Full: free the slots of waiters whose process is gone (waiting,
		// or notified or abandoned but never back to free the slot).
		for i := range c.slots {
			sl := &c.slots[i]
			st := atomic.LoadUint32(&sl.state)
			if (st == slotWaiting || st == slotNotified || st == slotAbandoned) &&
				!futex.Alive(futex.ID(atomic.LoadUint64(&sl.owner))) {
				atomic.CompareAndSwapUint32(&sl.state, st, slotFree)
			}
		}
	}
	return nil, ErrTooManyWaiters
}

// WaitFor waits until pred returns true, re-checking it (with the lock
// held) after every wake-up: pred reads state that the notifiers change
// under the lock. It returns nil when pred holds, or ctx's error when ctx
// ended with pred still false. The lock must be held and is held on
// return.
func (c *Condition) WaitFor(ctx context.Context, pred func() bool) error {
	for !pred() {
		if err := c.Wait(ctx); err != nil && err != ErrOwnerDead {
			if pred() {
				return nil
			}
			return err
		}
	}
	return nil
}

// Notify wakes up to n waiters, the longest waiting first; n <= 0 wakes
// none. The calling process must hold the lock (ErrNotHeld). Notify does
// not wait for the woken waiters.
func (c *Condition) Notify(n int) error {
	m := c.m.Load()
	if m == nil {
		return ErrClosed
	}
	if !c.lk.held() {
		return ErrNotHeld
	}
	if n <= 0 {
		return nil
	}
	type cand struct {
		sl  *condSlot
		age uint32
	}
	now := atomic.LoadUint32(&m.tickets)
	var cands []cand
	for i := range c.slots {
		sl := &c.slots[i]
		if atomic.LoadUint32(&sl.state) == slotWaiting {
			cands = append(cands, cand{sl, now - atomic.LoadUint32(&sl.ticket)})
		}
	}
	if len(cands) > n {
		slices.SortFunc(cands, func(a, b cand) int { return int(int64(b.age) - int64(a.age)) })
	}
	woken := 0
	for _, cd := range cands {
		if woken == n {
			break
		}
		if !futex.Exists(futex.ID(atomic.LoadUint64(&cd.sl.owner))) {
			atomic.CompareAndSwapUint32(&cd.sl.state, slotWaiting, slotFree)
			continue
		}
		if atomic.CompareAndSwapUint32(&cd.sl.state, slotWaiting, slotNotified) {
			futex.Wake(&cd.sl.state, 1)
			woken++
		}
	}
	return nil
}

// NotifyAll wakes every waiter. The calling process must hold the lock.
func (c *Condition) NotifyAll() error { return c.Notify(1<<31 - 1) }

// Waiting returns the number of waiters not yet notified (a snapshot).
func (c *Condition) Waiting() int {
	if c.m.Load() == nil {
		return 0
	}
	n := 0
	for i := range c.slots {
		if atomic.LoadUint32(&c.slots[i].state) == slotWaiting {
			n++
		}
	}
	return n
}

// Close releases this process's handle to the Condition (not to a lock
// given to NewCondition), as Lock.Close does.
func (c *Condition) Close() error {
	if c.m.Swap(nil) == nil {
		return nil
	}
	err := c.reg.close()
	if c.ownLock {
		if cl, ok := c.lock.(interface{ Close() error }); ok {
			if e := cl.Close(); err == nil {
				err = e
			}
		}
	}
	return err
}

// MultiprocHandle describes the Condition, with its lock, for another
// process (see Lock.MultiprocHandle).
func (c *Condition) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	m := c.m.Load()
	if m == nil {
		return nil, nil, ErrClosed
	}
	files, cdesc, err := c.reg.handle(kindCondition)
	if err != nil {
		return nil, nil, err
	}
	desc = binary.LittleEndian.AppendUint32(nil, uint32(len(files)))
	desc = binary.LittleEndian.AppendUint32(desc, uint32(len(cdesc)))
	desc = append(desc, cdesc...)
	if m.embedded == 1 {
		return files, desc, nil
	}
	lf, ldesc, err := c.lk.handle()
	if err != nil {
		closeFiles(files)
		return nil, nil, err
	}
	desc = append(desc, byte(c.lk.kind()))
	return append(files, lf...), append(desc, ldesc...), nil
}

// MultiprocAttach makes the zero Condition c a handle to the Condition
// described by MultiprocHandle in another process, with its lock. It takes
// ownership of files.
func (c *Condition) MultiprocAttach(files []*os.File, desc []byte) error {
	if c.m.Load() != nil {
		closeFiles(files)
		return fmt.Errorf("%w: MultiprocAttach on a Condition in use", ErrBadHandle)
	}
	if len(desc) < 8 {
		closeFiles(files)
		return fmt.Errorf("%w: short Condition handle", ErrBadHandle)
	}
	nf := int(binary.LittleEndian.Uint32(desc))
	nd := int(binary.LittleEndian.Uint32(desc[4:]))
	if nf > len(files) || nd > len(desc)-8 {
		closeFiles(files)
		return fmt.Errorf("%w: bad Condition handle", ErrBadHandle)
	}
	cdesc, rest := desc[8:8+nd], desc[8+nd:]
	lfiles := files[nf:]
	r, err := attachRegion(files[:nf], cdesc, kindCondition)
	if err != nil {
		closeFiles(lfiles)
		return err
	}
	m := (*condMem)(r.p)
	if r.size < ConditionSize(int(m.nslots)) {
		r.close()
		closeFiles(lfiles)
		return fmt.Errorf("%w: Condition of %d slots in %d bytes", ErrBadHandle, m.nslots, r.size)
	}
	var lock Mutex
	if m.embedded != 1 {
		if len(rest) < 1 {
			r.close()
			closeFiles(lfiles)
			return fmt.Errorf("%w: Condition handle without its lock", ErrBadHandle)
		}
		switch kind(rest[0]) {
		case kindLock:
			l := new(Lock)
			err = l.MultiprocAttach(lfiles, rest[1:])
			lock = l
		case kindRLock:
			l := new(RLock)
			err = l.MultiprocAttach(lfiles, rest[1:])
			lock = l
		default:
			closeFiles(lfiles)
			err = fmt.Errorf("%w: Condition lock of kind %d", ErrBadHandle, rest[0])
		}
		if err != nil {
			r.close()
			return err
		}
	} else {
		closeFiles(lfiles)
	}
	lock, err = condEmbeddedLock(r, lock)
	if err != nil {
		r.close()
		return err
	}
	nc := newCondition(r, lock)
	c.reg, c.lock, c.lk, c.slots = nc.reg, nc.lock, nc.lk, nc.slots
	c.ownLock = m.embedded != 1
	c.m.Store(nc.m.Load())
	return nil
}
