// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"sync"

	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// The synchronisation objects live in the server. Waits run in their own
// goroutine with a context that the client's Cancel request, or the
// connection's end, cancels. Every wait is FIFO and hands the resource
// directly to the waiter it wakes.

func init() {
	register(&typeInfo{name: "Lock", create: newLockObj(false), methods: lockMethods})
	register(&typeInfo{name: "RLock", create: newLockObj(true), methods: lockMethods})
	register(&typeInfo{name: "Semaphore", create: newSemObj(false), methods: semMethods})
	register(&typeInfo{name: "BoundedSemaphore", create: newSemObj(true), methods: semMethods})
	register(&typeInfo{name: "Condition", create: newCondObj, methods: condMethods})
	register(&typeInfo{name: "Event", create: newEventObj, methods: eventMethods})
	register(&typeInfo{name: "Barrier", create: newBarrierObj, methods: barrierMethods})
	register(&typeInfo{name: "Queue", create: newQueueObj(false), methods: queueMethods(false)})
	register(&typeInfo{name: "JoinableQueue", create: newQueueObj(true), methods: queueMethods(true)})
}

// ---------------------------------------------------------------- locks

// lockCore is a Lock or an RLock. It records its holder: the connection
// and the proxy (owner) that acquired it. When the holder's connection
// ends while holding it, the lock is released and the next acquirer is
// told ErrOwnerDead.
type lockCore struct {
	mu        sync.Mutex
	reentrant bool
	held      bool
	sc        *sconn
	owner     uint64
	count     int
	dead      bool // the last holder died; tell the next acquirer
	waiters   []*lockWaiter
}

type lockWaiter struct {
	ch      chan struct{}
	sc      *sconn
	owner   uint64
	n       int
	granted bool
	dead    bool
}

func (l *lockCore) take(sc *sconn, owner uint64, n int) {
	l.held, l.sc, l.owner, l.count = true, sc, owner, n
	if sc != nil {
		sc.mu.Lock()
		sc.held[l] = struct{}{}
		sc.mu.Unlock()
	}
}

func (l *lockCore) untrack() {
	if l.sc != nil {
		l.sc.mu.Lock()
		delete(l.sc.held, l)
		l.sc.mu.Unlock()
	}
	l.held, l.sc, l.owner, l.count = false, nil, 0, 0
}

// acquire takes the lock n times (n > 1 only when a Condition restores an
// RLock's depth). It returns false when blocking is false and the lock is
// taken, or ctx's error.
func (l *lockCore) acquire(ctx context.Context, sc *sconn, owner uint64, blocking bool, n int) (bool, error) {
	l.mu.Lock()
	if !l.held {
		l.take(sc, owner, n)
		dead := l.dead
		l.dead = false
		l.mu.Unlock()
		if dead {
			return true, ErrOwnerDead
		}
		return true, nil
	}
	if l.reentrant && l.sc == sc && l.owner == owner {
		l.count += n
		l.mu.Unlock()
		return true, nil
	}
	if !blocking {
		l.mu.Unlock()
		return false, nil
	}
	w := &lockWaiter{ch: make(chan struct{}), sc: sc, owner: owner, n: n}
	l.waiters = append(l.waiters, w)
	l.mu.Unlock()
	select {
	case <-w.ch:
	case <-ctx.Done():
		l.mu.Lock()
		if !w.granted {
			for i, x := range l.waiters {
				if x == w {
					l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
					break
				}
			}
			l.mu.Unlock()
			return false, ctx.Err()
		}
		l.mu.Unlock()
	}
	if w.dead {
		return true, ErrOwnerDead
	}
	return true, nil
}

// handoff gives the lock to the first waiter or frees it. l.mu held.
func (l *lockCore) handoff(dead bool) {
	l.untrack()
	if len(l.waiters) == 0 {
		l.dead = l.dead || dead
		return
	}
	w := l.waiters[0]
	l.waiters = l.waiters[1:]
	w.granted, w.dead = true, dead || l.dead
	l.dead = false
	l.take(w.sc, w.owner, w.n)
	close(w.ch)
}

// release releases the lock once (all the way when all is true) and
// returns the depth released. A Lock may be released by anyone (Python's
// threading.Lock); an RLock only by its holder.
func (l *lockCore) release(sc *sconn, owner uint64, all bool) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.held {
		return 0, errorf(ErrNotHeld, "release of an unlocked lock")
	}
	if l.reentrant && (l.sc != sc || l.owner != owner) {
		return 0, errorf(ErrNotHeld, "cannot release an RLock held by someone else")
	}
	n := 1
	if all {
		n = l.count
	}
	l.count -= n
	if l.count > 0 {
		return n, nil
	}
	l.handoff(false)
	return n, nil
}

func (l *lockCore) holds(sc *sconn, owner uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held && l.sc == sc && l.owner == owner
}

// connDied releases the lock if sc holds it.
func (l *lockCore) connDied(sc *sconn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held && l.sc == sc {
		l.handoff(true)
	}
}

type lockObj struct{ core lockCore }

func newLockObj(reentrant bool) func(*callCtx, []*pb.Value) (any, error) {
	return func(cc *callCtx, args []*pb.Value) (any, error) {
		if len(args) != 0 {
			return nil, errorf(ErrBadArgs, "locks take no arguments")
		}
		return &lockObj{core: lockCore{reentrant: reentrant}}, nil
	}
}

func (o *lockObj) getValue(cc *callCtx) (*pb.Value, error) {
	o.core.mu.Lock()
	defer o.core.mu.Unlock()
	return boolValue(o.core.held), nil
}

func acquireMethod[O any](core func(O) *lockCore) *method {
	return opt(blocking(mk("Acquire", 1, func(cc *callCtx, o O, a []*pb.Value) (*pb.Value, error) {
		block := true
		if len(a) > 0 {
			b, err := argBool(a[0], "blocking")
			if err != nil {
				return nil, err
			}
			block = b
		}
		ok, err := core(o).acquire(cc.ctx, cc.sc, cc.owner, block, 1)
		if err != nil {
			return nil, err
		}
		return boolValue(ok), nil
	})), 1)
}

func releaseMethod[O any](core func(O) *lockCore) *method {
	return mk("Release", 0, func(cc *callCtx, o O, a []*pb.Value) (*pb.Value, error) {
		_, err := core(o).release(cc.sc, cc.owner, false)
		return nil, err
	})
}

func lockedMethod[O any](core func(O) *lockCore) *method {
	return mk("Locked", 0, func(cc *callCtx, o O, a []*pb.Value) (*pb.Value, error) {
		l := core(o)
		l.mu.Lock()
		defer l.mu.Unlock()
		return boolValue(l.held), nil
	})
}

func lockOf(o *lockObj) *lockCore { return &o.core }

var lockMethods = methods(acquireMethod(lockOf), releaseMethod(lockOf), lockedMethod(lockOf))

// ---------------------------------------------------------------- semaphores

type semObj struct {
	mu      sync.Mutex
	value   int64
	bound   int64 // -1: unbounded
	waiters []*semWaiter
}

type semWaiter struct {
	ch      chan struct{}
	granted bool
}

func newSemObj(bounded bool) func(*callCtx, []*pb.Value) (any, error) {
	return func(cc *callCtx, args []*pb.Value) (any, error) {
		v := int64(1)
		if len(args) > 1 {
			return nil, errorf(ErrBadArgs, "a semaphore takes at most one argument (its value)")
		}
		if len(args) == 1 {
			n, err := argInt(args[0], "value")
			if err != nil {
				return nil, err
			}
			v = n
		}
		if v < 0 {
			return nil, errorf(ErrBadArgs, "semaphore initial value must be >= 0")
		}
		s := &semObj{value: v, bound: -1}
		if bounded {
			s.bound = v
		}
		return s, nil
	}
}

func (s *semObj) getValue(cc *callCtx) (*pb.Value, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return intValue(s.value), nil
}

var semMethods = methods(
	opt(blocking(mk("Acquire", 1, func(cc *callCtx, s *semObj, a []*pb.Value) (*pb.Value, error) {
		block := true
		if len(a) > 0 {
			b, err := argBool(a[0], "blocking")
			if err != nil {
				return nil, err
			}
			block = b
		}
		s.mu.Lock()
		if s.value > 0 && len(s.waiters) == 0 {
			s.value--
			s.mu.Unlock()
			return boolValue(true), nil
		}
		if !block {
			s.mu.Unlock()
			return boolValue(false), nil
		}
		w := &semWaiter{ch: make(chan struct{})}
		s.waiters = append(s.waiters, w)
		s.mu.Unlock()
		select {
		case <-w.ch:
			return boolValue(true), nil
		case <-cc.ctx.Done():
			s.mu.Lock()
			defer s.mu.Unlock()
			if w.granted {
				return boolValue(true), nil
			}
			for i, x := range s.waiters {
				if x == w {
					s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
					break
				}
			}
			return nil, cc.ctx.Err()
		}
	})), 1),
	opt(mk("Release", 1, func(cc *callCtx, s *semObj, a []*pb.Value) (*pb.Value, error) {
		n := int64(1)
		if len(a) > 0 {
			v, err := argInt(a[0], "n")
			if err != nil {
				return nil, err
			}
			if v < 1 {
				return nil, errorf(ErrBadArgs, "n must be >= 1")
			}
			n = v
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.bound >= 0 && s.value+n > s.bound {
			return nil, errorf(ErrOverRelease, "semaphore released too many times")
		}
		for ; n > 0 && len(s.waiters) > 0; n-- {
			w := s.waiters[0]
			s.waiters = s.waiters[1:]
			w.granted = true
			close(w.ch)
		}
		s.value += n
		return nil, nil
	}), 1),
	mk("Value", 0, func(cc *callCtx, s *semObj, a []*pb.Value) (*pb.Value, error) {
		return s.getValue(cc)
	}),
)

// ---------------------------------------------------------------- Condition

type condObj struct {
	lock    *lockCore
	lockArg *pb.Value // the Lock/RLock proxy given at creation, if any
	mu      sync.Mutex
	waiters []*condWaiter
}

type condWaiter struct {
	ch       chan struct{}
	notified bool
}

func newCondObj(cc *callCtx, args []*pb.Value) (any, error) {
	if len(args) > 1 {
		return nil, errorf(ErrBadArgs, "Condition takes at most one argument (a Lock or RLock)")
	}
	if len(args) == 0 || isNull(args[0]) {
		return &condObj{lock: &lockCore{reentrant: true}}, nil
	}
	ref, ok := args[0].GetKind().(*pb.Value_Proxy)
	if !ok {
		return nil, errorf(ErrBadArgs, "Condition's lock must be a Lock or RLock proxy, not %s", kindName(args[0]))
	}
	e, err := cc.s.lookup(ref.Proxy.Id)
	if err != nil {
		return nil, err
	}
	lo, ok := e.obj.(*lockObj)
	if !ok {
		return nil, errorf(ErrBadArgs, "Condition's lock must be a Lock or RLock, not %s", e.ti.name)
	}
	if err := cc.s.holdValue(args[0]); err != nil {
		return nil, err
	}
	return &condObj{lock: &lo.core, lockArg: args[0]}, nil
}

func (c *condObj) free() []*pb.Value {
	if c.lockArg != nil {
		return []*pb.Value{c.lockArg}
	}
	return nil
}

func condLock(c *condObj) *lockCore { return c.lock }

var condMethods = methods(
	acquireMethod(condLock),
	releaseMethod(condLock),
	lockedMethod(condLock),
	blocking(mk("Wait", 0, func(cc *callCtx, c *condObj, a []*pb.Value) (*pb.Value, error) {
		if !c.lock.holds(cc.sc, cc.owner) {
			return nil, errorf(ErrNotHeld, "cannot wait on an un-acquired condition")
		}
		w := &condWaiter{ch: make(chan struct{})}
		c.mu.Lock()
		c.waiters = append(c.waiters, w)
		c.mu.Unlock()
		depth, err := c.lock.release(cc.sc, cc.owner, true)
		if err != nil {
			return nil, err
		}
		var waitErr error
		select {
		case <-w.ch:
		case <-cc.ctx.Done():
			c.mu.Lock()
			if !w.notified {
				for i, x := range c.waiters {
					if x == w {
						c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
						break
					}
				}
				waitErr = cc.ctx.Err()
			}
			c.mu.Unlock()
		}
		// Like Python, the lock is re-acquired whatever happened; only
		// the connection's end stops that.
		if _, err := c.lock.acquire(cc.sc.ctx, cc.sc, cc.owner, true, depth); err != nil && err != ErrOwnerDead {
			return nil, err
		}
		if waitErr != nil {
			return nil, waitErr
		}
		return boolValue(true), nil
	})),
	opt(mk("Notify", 1, func(cc *callCtx, c *condObj, a []*pb.Value) (*pb.Value, error) {
		n := int64(1)
		if len(a) > 0 {
			v, err := argInt(a[0], "n")
			if err != nil {
				return nil, err
			}
			n = v
		}
		if !c.lock.holds(cc.sc, cc.owner) {
			return nil, errorf(ErrNotHeld, "cannot notify on an un-acquired condition")
		}
		c.notify(n)
		return nil, nil
	}), 1),
	mk("NotifyAll", 0, func(cc *callCtx, c *condObj, a []*pb.Value) (*pb.Value, error) {
		if !c.lock.holds(cc.sc, cc.owner) {
			return nil, errorf(ErrNotHeld, "cannot notify on an un-acquired condition")
		}
		c.notify(-1)
		return nil, nil
	}),
)

// notify wakes n waiters (all when n < 0).
func (c *condObj) notify(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.waiters) > 0 && n != 0 {
		w := c.waiters[0]
		c.waiters = c.waiters[1:]
		w.notified = true
		close(w.ch)
		n--
	}
}

// ---------------------------------------------------------------- Event

type eventObj struct {
	mu  sync.Mutex
	set bool
	ch  chan struct{} // closed when set
}

func newEventObj(cc *callCtx, args []*pb.Value) (any, error) {
	if len(args) != 0 {
		return nil, errorf(ErrBadArgs, "Event takes no arguments")
	}
	return &eventObj{ch: make(chan struct{})}, nil
}

func (e *eventObj) getValue(cc *callCtx) (*pb.Value, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return boolValue(e.set), nil
}

var eventMethods = methods(
	mk("Set", 0, func(cc *callCtx, e *eventObj, a []*pb.Value) (*pb.Value, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if !e.set {
			e.set = true
			close(e.ch)
		}
		return nil, nil
	}),
	mk("Clear", 0, func(cc *callCtx, e *eventObj, a []*pb.Value) (*pb.Value, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.set {
			e.set = false
			e.ch = make(chan struct{})
		}
		return nil, nil
	}),
	mk("IsSet", 0, func(cc *callCtx, e *eventObj, a []*pb.Value) (*pb.Value, error) {
		return e.getValue(cc)
	}),
	blocking(mk("Wait", 0, func(cc *callCtx, e *eventObj, a []*pb.Value) (*pb.Value, error) {
		e.mu.Lock()
		ch := e.ch
		e.mu.Unlock()
		select {
		case <-ch:
			return boolValue(true), nil
		case <-cc.ctx.Done():
			return nil, cc.ctx.Err()
		}
	})),
)

// ---------------------------------------------------------------- Barrier

// barrierObj is threading.Barrier without an action (nothing executable
// crosses the wire). A generation ends when all parties have arrived, or
// breaks when one of them is cancelled or Abort is called.
type barrierObj struct {
	mu      sync.Mutex
	parties int64
	count   int64
	gen     *barrierGen
}

type barrierGen struct {
	ch     chan struct{}
	broken bool
}

func newBarrierObj(cc *callCtx, args []*pb.Value) (any, error) {
	if len(args) != 1 {
		return nil, errorf(ErrBadArgs, "Barrier takes one argument (parties)")
	}
	n, err := argInt(args[0], "parties")
	if err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, errorf(ErrBadArgs, "parties must be >= 1")
	}
	return &barrierObj{parties: n, gen: &barrierGen{ch: make(chan struct{})}}, nil
}

// breakLocked breaks the current generation.
func (b *barrierObj) breakLocked() {
	if !b.gen.broken {
		b.gen.broken = true
		close(b.gen.ch)
	}
}

var barrierMethods = methods(
	blocking(mk("Wait", 0, func(cc *callCtx, b *barrierObj, a []*pb.Value) (*pb.Value, error) {
		b.mu.Lock()
		g := b.gen
		if g.broken {
			b.mu.Unlock()
			return nil, errorf(ErrBrokenBarrier, "barrier is broken")
		}
		idx := b.count
		b.count++
		if b.count == b.parties {
			close(g.ch)
			b.gen = &barrierGen{ch: make(chan struct{})}
			b.count = 0
			b.mu.Unlock()
			return intValue(idx), nil
		}
		b.mu.Unlock()
		select {
		case <-g.ch:
		case <-cc.ctx.Done():
			b.mu.Lock()
			if b.gen == g {
				b.breakLocked()
			}
			b.mu.Unlock()
		}
		if g.broken {
			return nil, errorf(ErrBrokenBarrier, "barrier is broken")
		}
		return intValue(idx), nil
	})),
	mk("Abort", 0, func(cc *callCtx, b *barrierObj, a []*pb.Value) (*pb.Value, error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.breakLocked()
		return nil, nil
	}),
	mk("Reset", 0, func(cc *callCtx, b *barrierObj, a []*pb.Value) (*pb.Value, error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.count > 0 {
			b.breakLocked() // waiters of this generation get ErrBrokenBarrier
		}
		b.gen = &barrierGen{ch: make(chan struct{})}
		b.count = 0
		return nil, nil
	}),
	mk("Parties", 0, func(cc *callCtx, b *barrierObj, a []*pb.Value) (*pb.Value, error) {
		return intValue(b.parties), nil
	}),
	mk("NWaiting", 0, func(cc *callCtx, b *barrierObj, a []*pb.Value) (*pb.Value, error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		return intValue(b.count), nil
	}),
	mk("Broken", 0, func(cc *callCtx, b *barrierObj, a []*pb.Value) (*pb.Value, error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		return boolValue(b.gen.broken), nil
	}),
)

// ---------------------------------------------------------------- Queue

// queueObj is queue.Queue (and JoinableQueue) in the server.
type queueObj struct {
	mu         sync.Mutex
	items      []*pb.Value
	head       int
	maxsize    int
	unfinished int64
	changed    chan struct{} // closed and replaced on every change
}

func newQueueObj(joinable bool) func(*callCtx, []*pb.Value) (any, error) {
	return func(cc *callCtx, args []*pb.Value) (any, error) {
		if len(args) > 1 {
			return nil, errorf(ErrBadArgs, "Queue takes at most one argument (maxsize)")
		}
		q := &queueObj{changed: make(chan struct{})}
		if len(args) == 1 {
			n, err := argInt(args[0], "maxsize")
			if err != nil {
				return nil, err
			}
			q.maxsize = int(max(0, min(n, 1<<30)))
		}
		return q, nil
	}
}

func (q *queueObj) len() int { return len(q.items) - q.head }

func (q *queueObj) signal() {
	close(q.changed)
	q.changed = make(chan struct{})
}

func (q *queueObj) free() []*pb.Value {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items[q.head:]
	q.items, q.head = nil, 0
	return items
}

// waitChange waits until q changes. q.mu held on entry and on return.
func (q *queueObj) waitChange(ctx context.Context) error {
	ch := q.changed
	q.mu.Unlock()
	defer q.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func queueMethods(joinable bool) map[string]*method {
	ms := []*method{
		opt(blocking(mk("Put", 2, func(cc *callCtx, q *queueObj, a []*pb.Value) (*pb.Value, error) {
			block := true
			if len(a) > 1 {
				b, err := argBool(a[1], "block")
				if err != nil {
					return nil, err
				}
				block = b
			}
			if err := cc.s.holdValue(a[0]); err != nil {
				return nil, err
			}
			q.mu.Lock()
			for q.maxsize > 0 && q.len() >= q.maxsize {
				if !block {
					q.mu.Unlock()
					cc.s.dropValue(a[0])
					return nil, errorf(ErrFull, "queue of %d is full", q.maxsize)
				}
				if err := q.waitChange(cc.ctx); err != nil {
					q.mu.Unlock()
					cc.s.dropValue(a[0])
					return nil, err
				}
			}
			q.items = append(q.items, a[0])
			q.unfinished++
			q.signal()
			q.mu.Unlock()
			return nil, nil
		})), 1),
		opt(blocking(mk("Get", 1, func(cc *callCtx, q *queueObj, a []*pb.Value) (*pb.Value, error) {
			block := true
			if len(a) > 0 {
				b, err := argBool(a[0], "block")
				if err != nil {
					return nil, err
				}
				block = b
			}
			q.mu.Lock()
			for q.len() == 0 {
				if !block {
					q.mu.Unlock()
					return nil, errorf(ErrEmpty, "queue is empty")
				}
				if err := q.waitChange(cc.ctx); err != nil {
					q.mu.Unlock()
					return nil, err
				}
			}
			v := q.items[q.head]
			q.items[q.head] = nil
			q.head++
			if q.head > 64 && q.head*2 > len(q.items) {
				q.items = append(q.items[:0], q.items[q.head:]...)
				q.head = 0
			}
			out, err := cc.ret(v)
			q.signal()
			q.mu.Unlock()
			cc.s.dropValue(v)
			return out, err
		})), 1),
		mk("Qsize", 0, func(cc *callCtx, q *queueObj, a []*pb.Value) (*pb.Value, error) {
			q.mu.Lock()
			defer q.mu.Unlock()
			return intValue(int64(q.len())), nil
		}),
		mk("Empty", 0, func(cc *callCtx, q *queueObj, a []*pb.Value) (*pb.Value, error) {
			q.mu.Lock()
			defer q.mu.Unlock()
			return boolValue(q.len() == 0), nil
		}),
		mk("Full", 0, func(cc *callCtx, q *queueObj, a []*pb.Value) (*pb.Value, error) {
			q.mu.Lock()
			defer q.mu.Unlock()
			return boolValue(q.maxsize > 0 && q.len() >= q.maxsize), nil
		}),
	}
	if joinable {
		ms = append(ms,
			mk("TaskDone", 0, func(cc *callCtx, q *queueObj, a []*pb.Value) (*pb.Value, error) {
				q.mu.Lock()
				defer q.mu.Unlock()
				if q.unfinished <= 0 {
					return nil, errorf(ErrOverRelease, "task_done() called too many times")
				}
				q.unfinished--
				q.signal()
				return nil, nil
			}),
			blocking(mk("Join", 0, func(cc *callCtx, q *queueObj, a []*pb.Value) (*pb.Value, error) {
				q.mu.Lock()
				defer q.mu.Unlock()
				for q.unfinished > 0 {
					if err := q.waitChange(cc.ctx); err != nil {
						return nil, err
					}
				}
				return nil, nil
			})),
		)
	}
	return methods(ms...)
}
