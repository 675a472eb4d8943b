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

// ownedSemMem is the shared layout of an OwnedSemaphore (kind
// OwnedSemaphore, layout version 1 of the magic word): a 64-byte header,
// then one 8-byte holder word per permit, the futex.ID (pid and start
// time) of the process holding that permit, or 0 when it is free. Taking
// a permit is one compare-and-swap of a holder word from 0 to the taker's
// ID, so there is no moment at which a permit is taken but not yet
// recorded: a process killed at any instant leaves each permit either
// free or recorded as its own.
type ownedSemMem struct {
	magic   uint32
	permits uint32 // number of holder words
	nwait   uint32 // waiters asleep or about to sleep
	seq     uint32 // futex word: waiters sleep on it; every release and reclaim advances it
}

const ownedSlotsOff = align

// MaxOwnedPermits is the largest number of permits of an OwnedSemaphore.
const MaxOwnedPermits = 4096

// OwnedSemaphoreSize returns the number of bytes an OwnedSemaphore with
// the given number of permits occupies (see InSegment).
func OwnedSemaphoreSize(permits int) int { return roundUp(ownedSlotsOff + 8*permits) }

// An OwnedSemaphore is a counting semaphore whose permits have owners: a
// permit is held by the process that acquired it, only that process may
// release it, and when it dies holding permits they are given back. Python
// has nothing like it (nor has POSIX): there, a process killed while
// holding semaphore tokens loses them forever, and a pool of N resources
// guarded by a semaphore slowly shrinks to none as workers are killed.
//
// It is a separate type, not an option of Semaphore, because its contract
// differs where a Semaphore's must not change: Release by a process that
// holds no permit is an error (ErrNotHeld) instead of a legitimate
// hand-off, the value can never exceed the initial number of permits (it
// is always bounded), and the shared memory records every holder, one
// word per permit (OwnedSemaphoreSize), so the number of permits is fixed
// at creation and at most MaxOwnedPermits.
//
// The owner is the process, as for Lock: any goroutine of the holding
// process may release one of the process's permits, and a process may
// hold several. Permits of a process that died are given back when
// another process needs one: a waiter checks the holders after 20 ms of
// sleep and then watches them through pidfds (see "Ownership and
// robustness" in the package documentation), so a waiter already asleep
// gets a dead holder's permit within milliseconds; TryAcquire gives back
// the permits of holders whose pid no longer exists. A permit given back
// is acquired like any other, with no error: unlike a lock's, a permit
// guards no data of the dead holder that could need repair.
//
// A Release happens before the Acquire that takes the permit it freed.
// An OwnedSemaphore must not be copied after first use. The zero
// OwnedSemaphore is not usable (its methods return ErrClosed) until
// MultiprocAttach. Its methods are safe for concurrent use by goroutines
// and processes; Close is not concurrent with anything else.
type OwnedSemaphore struct {
	m     atomic.Pointer[ownedSemMem]
	reg   *region
	slots []uint64
	me    uint64
	hint  atomic.Uint32 // where this handle's scans start: its last permit
	spin  spin.Spinner
}

// NewOwnedSemaphore creates an OwnedSemaphore with permits permits, all
// free, by default in the package's shared arena.
func NewOwnedSemaphore(permits int, opts ...Option) (*OwnedSemaphore, error) {
	if permits < 1 || permits > MaxOwnedPermits {
		return nil, fmt.Errorf("syncprim: owned semaphore of %d permits out of range [1, %d]", permits, MaxOwnedPermits)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	r, err := newRegion(OwnedSemaphoreSize(permits), &o)
	if err != nil {
		return nil, err
	}
	(*ownedSemMem)(r.p).permits = uint32(permits)
	r.publish(kindOwnedSemaphore)
	s := &OwnedSemaphore{reg: r}
	if err := s.bind(r); err != nil {
		r.close()
		return nil, err
	}
	return s, nil
}

// OpenOwnedSemaphore reaches the OwnedSemaphore created in seg at offset
// with InSegment. Close does not close seg.
func OpenOwnedSemaphore(seg *shm.Segment, offset int) (*OwnedSemaphore, error) {
	r, err := openRegion(seg, offset, ownedSlotsOff, kindOwnedSemaphore)
	if err != nil {
		return nil, err
	}
	r.size = OwnedSemaphoreSize(int(atomic.LoadUint32(&(*ownedSemMem)(r.p).permits)))
	if offset > len(seg.Bytes())-r.size {
		return nil, fmt.Errorf("%w: OwnedSemaphore of %d bytes at offset %d", ErrBadHandle, r.size, offset)
	}
	s := &OwnedSemaphore{reg: r}
	if err := s.bind(r); err != nil {
		return nil, err
	}
	return s, nil
}

// bind points s at the semaphore in r, after checking that r holds as many
// holder words as the header says.
func (s *OwnedSemaphore) bind(r *region) error {
	m := (*ownedSemMem)(r.p)
	n := int(atomic.LoadUint32(&m.permits))
	if n < 1 || n > MaxOwnedPermits || OwnedSemaphoreSize(n) > r.size {
		return fmt.Errorf("%w: OwnedSemaphore of %d permits in %d bytes", ErrBadHandle, n, r.size)
	}
	s.slots = unsafe.Slice((*uint64)(unsafe.Add(r.p, ownedSlotsOff)), n)
	s.me = uint64(futex.Self())
	s.hint.Store(uint32(os.Getpid() % n))
	s.m.Store(m)
	return nil
}

// take claims a free permit for this process and reports whether it did.
func (s *OwnedSemaphore) take() bool {
	n := len(s.slots)
	start := int(s.hint.Load())
	for i := 0; i < n; i++ {
		j := start + i
		if j >= n {
			j -= n
		}
		if atomic.LoadUint64(&s.slots[j]) == 0 && atomic.CompareAndSwapUint64(&s.slots[j], 0, s.me) {
			s.hint.Store(uint32(j))
			race.Acquire(unsafe.Pointer(&s.slots[0]))
			return true
		}
	}
	return false
}

// Acquire takes a permit for this process, waiting until one is free (or
// given back by a holder that died) or ctx ends. On ctx's end it returns
// ctx's error and holds nothing more. A free permit is taken even when ctx
// is already done.
func (s *OwnedSemaphore) Acquire(ctx context.Context) error {
	m := s.m.Load()
	if m == nil {
		return ErrClosed
	}
	if s.take() {
		return nil
	}
	// Spinning rescans the holder words only when a release (which
	// always advances seq) happened: a scan reads up to MaxOwnedPermits
	// words.
	s0 := atomic.LoadUint32(&m.seq)
	if s.spin.Spin(func() bool {
		v := atomic.LoadUint32(&m.seq)
		if v == s0 {
			return false
		}
		s0 = v
		return s.take()
	}) {
		return nil
	}
	var stop func() bool
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	var hw holdersWatch
	defer hw.stop()
	for {
		seq := atomic.LoadUint32(&m.seq)
		atomic.AddUint32(&m.nwait, 1)
		if s.take() {
			atomic.AddUint32(&m.nwait, ^uint32(0))
			return nil
		}
		if err := ctx.Err(); err != nil {
			atomic.AddUint32(&m.nwait, ^uint32(0))
			s.leave(m)
			return err
		}
		if stop == nil && ctx.Done() != nil {
			atomic.AddUint32(&m.nwait, ^uint32(0))
			stop = wakeOnDone(ctx, &m.seq)
			continue
		}
		timedOut, err := sleep(ctx, &m.seq, seq, hw.timeout())
		atomic.AddUint32(&m.nwait, ^uint32(0))
		if err != nil {
			s.leave(m)
			return err
		}
		if timedOut || hw.armed {
			// Past the first check, every wake-up looks at the holders:
			// new ones get watched, fired watches are confirmed.
			hw.sweep(func(dead func(futex.ID) bool) { s.reclaim(m, dead) }, &m.seq, timedOut)
		}
	}
}

// reclaim frees the permits whose holder dead reports dead, and wakes as
// many waiters. It returns how many it freed.
func (s *OwnedSemaphore) reclaim(m *ownedSemMem, dead func(futex.ID) bool) int {
	verdict := map[futex.ID]bool{}
	freed := 0
	for i := range s.slots {
		v := atomic.LoadUint64(&s.slots[i])
		if v == 0 || v == s.me {
			continue
		}
		id := futex.ID(v)
		d, ok := verdict[id]
		if !ok {
			d = dead(id)
			verdict[id] = d
		}
		if d && atomic.CompareAndSwapUint64(&s.slots[i], v, 0) {
			freed++
		}
	}
	if freed > 0 {
		bump(&m.seq, freed)
	}
	return freed
}

// leave passes on a wake-up that a giving-up waiter may have consumed.
func (s *OwnedSemaphore) leave(m *ownedSemMem) {
	if atomic.LoadUint32(&m.nwait) > 0 && s.Value() > 0 {
		bump(&m.seq, 1)
	}
}

// TryAcquire takes a permit if one is free, or held by a process whose pid
// no longer exists (one kill(pid, 0) per holder, and only when no permit
// is free; a holder that is a zombie or whose pid was reused is recognised
// only by Acquire). It reports whether it took one.
func (s *OwnedSemaphore) TryAcquire() (bool, error) {
	m := s.m.Load()
	if m == nil {
		return false, ErrClosed
	}
	if s.take() {
		return true, nil
	}
	for s.reclaim(m, func(id futex.ID) bool { return !futex.Exists(id) }) > 0 {
		if s.take() {
			return true, nil
		}
	}
	return false, nil
}

// Release gives back one of the permits this process holds, waking a
// waiter. It returns ErrNotHeld, and changes nothing, when this process
// holds none. Release never blocks.
func (s *OwnedSemaphore) Release() error {
	m := s.m.Load()
	if m == nil {
		return ErrClosed
	}
	n := len(s.slots)
	start := int(s.hint.Load())
	for i := 0; i < n; i++ {
		j := start + i
		if j >= n {
			j -= n
		}
		if atomic.LoadUint64(&s.slots[j]) == s.me {
			race.Release(unsafe.Pointer(&s.slots[0]))
			if atomic.CompareAndSwapUint64(&s.slots[j], s.me, 0) {
				// seq advances on every release (spinners watch it);
				// only sleepers need the system call.
				atomic.AddUint32(&m.seq, 1)
				if atomic.LoadUint32(&m.nwait) != 0 {
					futex.Wake(&m.seq, 1)
				}
				return nil
			}
		}
	}
	return ErrNotHeld
}

// Value returns the number of free permits (a snapshot). Permits of a
// holder that died count as taken until a waiter or TryAcquire gives them
// back.
func (s *OwnedSemaphore) Value() int {
	if s.m.Load() == nil {
		return 0
	}
	n := 0
	for i := range s.slots {
		if atomic.LoadUint64(&s.slots[i]) == 0 {
			n++
		}
	}
	return n
}

// Held returns the number of permits this process holds (a snapshot).
func (s *OwnedSemaphore) Held() int {
	if s.m.Load() == nil {
		return 0
	}
	n := 0
	for i := range s.slots {
		if atomic.LoadUint64(&s.slots[i]) == s.me {
			n++
		}
	}
	return n
}

// Permits returns the number of permits the semaphore was made with.
func (s *OwnedSemaphore) Permits() int { return len(s.slots) }

// Close releases this process's handle, as Lock.Close does. Permits this
// process holds stay held until it releases them through another handle
// or exits.
func (s *OwnedSemaphore) Close() error { return closeMapped(&s.m, s.reg) }

// MultiprocHandle describes the semaphore for another process (see
// Lock.MultiprocHandle).
func (s *OwnedSemaphore) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	return describeMapped(&s.m, s.reg, kindOwnedSemaphore)
}

// MultiprocAttach makes the zero OwnedSemaphore s a handle to the
// semaphore described by MultiprocHandle in another process. It takes
// ownership of files.
func (s *OwnedSemaphore) MultiprocAttach(files []*os.File, desc []byte) error {
	if s.m.Load() != nil {
		closeFiles(files)
		return fmt.Errorf("%w: MultiprocAttach on an OwnedSemaphore in use", ErrBadHandle)
	}
	r, err := attachRegion(files, desc, kindOwnedSemaphore)
	if err != nil {
		return err
	}
	if err := s.bind(r); err != nil {
		r.close()
		return err
	}
	s.reg = r
	return nil
}
