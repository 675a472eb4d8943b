// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/multiproc/multiproc/internal/base/futex"
	"github.com/multiproc/multiproc/internal/base/race"
	"github.com/multiproc/multiproc/internal/base/spin"
	"github.com/multiproc/multiproc/shm"
)

// Barrier states (Python's threading.Barrier).
const (
	barrierFilling   = 0
	barrierDraining  = 1
	barrierResetting = -1
	barrierBroken    = -2
)

// barrierMem is the shared layout of a Barrier: its state and count,
// guarded by an embedded lock, and a futex word that every state change
// bumps (a broadcast-only condition variable).
type barrierMem struct {
	magic    uint32
	parties  uint32
	state    int32
	count    uint32
	timeout  int64 // default timeout of Wait in ns, 0 for none
	seq      uint32
	watchers uint32 // goroutines in awaitWaiting: arrivals bump seq
	lock     lockMem
	// action is the name of the registered action (RegisteredAction):
	// its length, then its bytes.
	action [1 + maxActionName]byte
	// waiters holds the futex.ID of the process of each party that has
	// arrived and not yet left (0: a free slot), for the first
	// barrierSlots of them: a waiter that finds one dead breaks the
	// barrier.
	waiters [barrierSlots]uint64
}

const (
	// barrierSlots is how many waiting parties a Barrier watches.
	barrierSlots = 24
	// maxActionName bounds the name of a registered action.
	maxActionName = 63
)

// BarrierSize is the number of bytes a Barrier occupies.
const BarrierSize = 320

// Action sets a Barrier's action: a function run once per pass, by the
// last party to arrive, before any party is released. A func value
// belongs to this process's handle: another process that attaches the
// Barrier does not have it (set it there with SetAction), so prefer
// RegisteredAction, whose name travels with the Barrier. A failing action
// (error or panic) breaks the barrier.
func Action(f func() error) Option { return func(o *options) { o.action = f } }

// A BarrierAction is a barrier action registered by name with
// RegisterBarrierAction, so that every process (the same binary) has it.
type BarrierAction struct{ name string }

// Name returns the name the action was registered under.
func (a BarrierAction) Name() string { return a.name }

var (
	actionsMu sync.RWMutex
	actions   = map[string]func() error{}
)

// RegisterBarrierAction registers f as a barrier action under name, for
// RegisteredAction. Call it at package level (var a =
// syncprim.RegisterBarrierAction(...)), as process.Register: children
// are re-executions of the binary and find the action by name. It panics
// when name is empty, longer than 63 bytes or already registered, or f is
// nil.
func RegisterBarrierAction(name string, f func() error) BarrierAction {
	switch {
	case name == "" || len(name) > maxActionName:
		panic(fmt.Sprintf("syncprim: RegisterBarrierAction(%q): the name must have 1 to %d bytes", name, maxActionName))
	case f == nil:
		panic(fmt.Sprintf("syncprim: RegisterBarrierAction(%q): nil function", name))
	}
	actionsMu.Lock()
	defer actionsMu.Unlock()
	if _, dup := actions[name]; dup {
		panic(fmt.Sprintf("syncprim: RegisterBarrierAction(%q): name already registered", name))
	}
	actions[name] = f
	return BarrierAction{name}
}

// RegisteredAction sets a Barrier's action to a registered one: its name
// is stored in the shared memory, so the action runs, in whichever
// process's party arrives last, without SetAction there (Python's Barrier
// action, which travels to children pickled). A process in which the
// name is not registered breaks the barrier when it would run it. An
// action set with SetAction or Action in a process runs instead of the
// registered one there.
func RegisteredAction(a BarrierAction) Option { return func(o *options) { o.actionName = a.name } }

// Timeout sets a Barrier's default timeout, applied to a Wait whose
// context has no deadline. It is stored in shared memory, so it holds in
// every process.
func Timeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// A Barrier makes a fixed number of parties wait for each other, like
// Python's multiprocessing.Barrier: each Wait returns once all parties have
// called Wait, with a distinct index in 0..parties-1 (the order of arrival;
// the last to arrive runs the action). The barrier is then reusable for the
// next pass. Everything a party did before its Wait happens before every
// party's return from that pass.
//
// A Wait whose context ends (timeout or cancellation) before the pass
// completes breaks the barrier for everyone: that Wait and all the others
// return ErrBrokenBarrier (the former wrapping the context's error too),
// and so does every Wait until Reset. A Wait cancelled before it could
// arrive (while the previous pass drains) returns the context's error and
// changes nothing. Abort breaks the barrier; Reset repairs it, breaking
// current waiters.
//
// A party that dies while it waits (killed, crashed) breaks the barrier:
// the parties waiting, in this pass or for the next, return
// ErrBrokenBarrier instead of waiting for it, as they would for an Abort,
// and the barrier is usable again after Reset. Waiters watch the
// processes of the parties that arrived (the first 24 of a pass), as lock
// waiters watch a lock's holder: an exit watch (pidfd) wakes them. A party
// that dies before it arrives cannot be told from one that is late: the
// others wait until their contexts end, which breaks the barrier; use
// timeouts (Timeout) with parties that may die that way.
//
// A Barrier must not be copied after first use. The zero Barrier is not
// usable (its methods return ErrClosed) until MultiprocAttach. Its methods
// are safe for concurrent use by goroutines and processes; Close is not
// concurrent with anything else.
type Barrier struct {
	m      atomic.Pointer[barrierMem]
	reg    *region
	spin   spin.Spinner
	action atomic.Pointer[func() error]
}

// NewBarrier creates a barrier for parties parties (at least 1).
func NewBarrier(parties int, opts ...Option) (*Barrier, error) {
	if parties < 1 || parties > 1<<30 {
		return nil, fmt.Errorf("syncprim: barrier of %d parties", parties)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.actionName != "" {
		actionsMu.RLock()
		_, ok := actions[o.actionName]
		actionsMu.RUnlock()
		if !ok {
			return nil, fmt.Errorf("syncprim: barrier action %q is not registered", o.actionName)
		}
	}
	if o.timeout < 0 {
		return nil, fmt.Errorf("syncprim: negative barrier timeout %v", o.timeout)
	}
	r, err := newRegion(BarrierSize, &o)
	if err != nil {
		return nil, err
	}
	m := (*barrierMem)(r.p)
	m.parties = uint32(parties)
	m.timeout = int64(o.timeout)
	m.action[0] = byte(copy(m.action[1:], o.actionName))
	r.publish(kindBarrier)
	b := &Barrier{reg: r}
	b.m.Store(m)
	if o.action != nil {
		b.SetAction(o.action)
	}
	return b, nil
}

// OpenBarrier reaches the Barrier created in seg at offset with InSegment.
// Its action, if any, must be set with SetAction.
func OpenBarrier(seg *shm.Segment, offset int) (*Barrier, error) {
	r, err := openRegion(seg, offset, BarrierSize, kindBarrier)
	if err != nil {
		return nil, err
	}
	b := &Barrier{reg: r}
	b.m.Store((*barrierMem)(r.p))
	return b, nil
}

// SetAction sets the action this process runs when its party is the last
// to arrive (see Action); nil removes it.
func (b *Barrier) SetAction(f func() error) {
	if f == nil {
		b.action.Store(nil)
		return
	}
	b.action.Store(&f)
}

// Parties returns the number of parties.
func (b *Barrier) Parties() int {
	m := b.m.Load()
	if m == nil {
		return 0
	}
	return int(m.parties)
}

// Waiting returns the number of parties waiting in the current pass (a
// snapshot; Python's n_waiting).
func (b *Barrier) Waiting() int {
	m := b.m.Load()
	if m == nil {
		return 0
	}
	b.lock(m)
	defer m.lock.unlock()
	if m.state == barrierFilling {
		return int(m.count)
	}
	return 0
}

// Broken reports whether the barrier is broken.
func (b *Barrier) Broken() bool {
	m := b.m.Load()
	if m == nil {
		return false
	}
	b.lock(m)
	defer m.lock.unlock()
	return m.state == barrierBroken
}

// lock takes the barrier's internal lock. The lock is only held for
// bookkeeping, so it is taken without regard to contexts; if a process
// died holding it the state may be half-updated, and the barrier breaks.
func (b *Barrier) lock(m *barrierMem) {
	me := uint64(futex.Self())
	if !atomic.CompareAndSwapUint64(&m.lock.owner, 0, me) {
		if err := m.lock.lockSlow(context.Background(), &b.spin); err == ErrOwnerDead {
			race.Acquire(unsafe.Pointer(&m.lock))
			m.breakLocked()
			return
		}
	}
	race.Acquire(unsafe.Pointer(&m.lock))
}

func (m *lockMem) unlock() {
	race.Release(unsafe.Pointer(m))
	if !atomic.CompareAndSwapUint64(&m.owner, uint64(futex.Self()), 0) {
		m.unlockSlow()
	}
}

func (m *barrierMem) notifyAll() { bumpAll(&m.seq) }

func (m *barrierMem) breakLocked() {
	m.state = barrierBroken
	m.notifyAll()
}

// waitChange releases the internal lock, sleeps until the state may have
// changed (or ctx ends), and re-takes the lock. With hwp, the sleep is
// capped so that the waiting parties' processes are checked (reapLocked):
// a dead one breaks the barrier. *hwp is made at the first check (a wait
// that ends sooner allocates nothing).
func (b *Barrier) waitChange(ctx context.Context, m *barrierMem, hwp **holdersWatch) error {
	s := atomic.LoadUint32(&m.seq)
	m.lock.unlock()
	var err error
	timedOut := false
	if !b.spin.Spin(func() bool { return atomic.LoadUint32(&m.seq) != s }) {
		for atomic.LoadUint32(&m.seq) == s {
			capd := time.Duration(0)
			if hwp != nil {
				capd = livenessFirst
				if *hwp != nil {
					capd = (*hwp).timeout()
				}
			}
			if timedOut, err = sleep(ctx, &m.seq, s, capd); err != nil || timedOut {
				break
			}
		}
	}
	b.lock(m)
	if hwp != nil && m.count > 0 && (timedOut || *hwp != nil) {
		// Not before the first capped sleep ran out: a short wait reads
		// no /proc.
		if *hwp == nil {
			*hwp = new(holdersWatch)
		}
		m.reapLocked(*hwp, timedOut)
	}
	return err
}

// reapLocked looks for waiting parties whose process died (see
// holdersWatch); each is counted as gone and the barrier breaks.
func (m *barrierMem) reapLocked(hw *holdersWatch, timedOut bool) {
	dead := false
	hw.sweep(func(isDead func(futex.ID) bool) {
		for i := range m.waiters {
			id := futex.ID(atomic.LoadUint64(&m.waiters[i]))
			if id != 0 && isDead(id) {
				atomic.StoreUint64(&m.waiters[i], 0)
				m.count--
				dead = true
			}
		}
	}, &m.seq, timedOut)
	if !dead {
		return
	}
	m.breakLocked()
	if m.count == 0 {
		// Nobody is left in the pass: the broken barrier waits for a
		// Reset (as after Abort).
		m.notifyAll()
	}
}

// takeSlotLocked records this process as a waiting party; it returns the
// slot, or -1 when every slot is taken (the party is not watched).
func (m *barrierMem) takeSlotLocked() int {
	for i := range m.waiters {
		if atomic.LoadUint64(&m.waiters[i]) == 0 {
			atomic.StoreUint64(&m.waiters[i], uint64(futex.Self()))
			return i
		}
	}
	return -1
}

// Wait waits until all parties have called Wait in this pass and returns
// this party's index, 0..Parties()-1. It returns ErrBrokenBarrier when the
// barrier is or becomes broken (by Abort, Reset, a failed action, or any
// party's context ending while it waits: see Barrier); the error of the
// action, when this party ran it and it failed; or ctx's error alone when
// ctx ended before this party could arrive.
func (b *Barrier) Wait(ctx context.Context) (int, error) {
	m := b.m.Load()
	if m == nil {
		return -1, ErrClosed
	}
	if d := time.Duration(m.timeout); d > 0 {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
	}
	stop := wakeOnDone(ctx, &m.seq)
	defer stop()
	var hw *holdersWatch // made by waitChange when the wait lasts
	defer func() {
		if hw != nil {
			hw.stop()
		}
	}()
	b.lock(m)
	defer m.lock.unlock()
	// Wait while the previous pass drains or a reset completes.
	for m.state == barrierDraining || m.state == barrierResetting {
		if err := b.waitChange(ctx, m, &hw); err != nil {
			return -1, err
		}
	}
	if m.state == barrierBroken {
		return -1, ErrBrokenBarrier
	}
	index := int(m.count)
	m.count++
	slot := m.takeSlotLocked()
	if atomic.LoadUint32(&m.watchers) != 0 {
		m.notifyAll()
	}
	defer func() {
		if slot >= 0 {
			atomic.StoreUint64(&m.waiters[slot], 0)
		}
		m.count--
		if m.count == 0 && (m.state == barrierDraining || m.state == barrierResetting) {
			m.state = barrierFilling
			m.notifyAll()
		}
	}()
	if index+1 == int(m.parties) {
		if err := b.runAction(m); err != nil {
			m.breakLocked()
			return index, err
		}
		m.state = barrierDraining
		m.notifyAll()
		return index, nil
	}
	for m.state == barrierFilling {
		if err := b.waitChange(ctx, m, &hw); err != nil {
			if m.state != barrierFilling {
				break
			}
			m.breakLocked()
			return index, fmt.Errorf("%w: %w", ErrBrokenBarrier, err)
		}
	}
	if m.state < 0 {
		return index, ErrBrokenBarrier
	}
	return index, nil
}

// runAction runs this process's action with the internal lock held; a
// panic breaks the barrier before it propagates.
func (b *Barrier) runAction(m *barrierMem) (err error) {
	f := b.action.Load()
	if f == nil {
		n := int(m.action[0])
		if n == 0 {
			return nil
		}
		name := string(m.action[1 : 1+min(n, maxActionName)])
		actionsMu.RLock()
		g := actions[name]
		actionsMu.RUnlock()
		if g == nil {
			return fmt.Errorf("syncprim: barrier action %q is not registered in this process", name)
		}
		f = &g
	}
	ok := false
	defer func() {
		if !ok {
			m.breakLocked()
		}
	}()
	err = (*f)()
	ok = true
	if err != nil {
		return fmt.Errorf("syncprim: barrier action: %w", err)
	}
	return nil
}

// awaitWaiting blocks until k parties wait in the current pass, or ctx
// ends (for tests: Python's n_waiting without polling).
func (b *Barrier) awaitWaiting(ctx context.Context, k int) error {
	m := b.m.Load()
	if m == nil {
		return ErrClosed
	}
	atomic.AddUint32(&m.watchers, 1)
	defer atomic.AddUint32(&m.watchers, ^uint32(0))
	stop := wakeOnDone(ctx, &m.seq)
	defer stop()
	b.lock(m)
	defer m.lock.unlock()
	for m.state != barrierFilling || int(m.count) < k {
		if err := b.waitChange(ctx, m, nil); err != nil {
			return err
		}
	}
	return nil
}

// Reset returns the barrier to its initial, unbroken state. Parties
// waiting in the current pass return ErrBrokenBarrier.
func (b *Barrier) Reset() error {
	m := b.m.Load()
	if m == nil {
		return ErrClosed
	}
	b.lock(m)
	defer m.lock.unlock()
	if m.count > 0 {
		if m.state == barrierFilling || m.state == barrierBroken {
			m.state = barrierResetting
		}
	} else {
		m.state = barrierFilling
	}
	m.notifyAll()
	return nil
}

// Abort breaks the barrier: current and future Waits return
// ErrBrokenBarrier until Reset.
func (b *Barrier) Abort() error {
	m := b.m.Load()
	if m == nil {
		return ErrClosed
	}
	b.lock(m)
	defer m.lock.unlock()
	m.breakLocked()
	return nil
}

// Close releases this process's handle, as Lock.Close does.
func (b *Barrier) Close() error { return closeMapped(&b.m, b.reg) }

// MultiprocHandle describes the barrier for another process (see
// Lock.MultiprocHandle). The action is not part of it.
func (b *Barrier) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	return describeMapped(&b.m, b.reg, kindBarrier)
}

// MultiprocAttach makes the zero Barrier b a handle to the barrier
// described by MultiprocHandle in another process. It takes ownership of
// files.
func (b *Barrier) MultiprocAttach(files []*os.File, desc []byte) error {
	return attachMapped(&b.m, &b.reg, files, desc, kindBarrier, "a Barrier")
}
