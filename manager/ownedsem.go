// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"sync"

	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// An OwnedSemaphore's permits belong to the client connection that
// acquired them: only that connection may release them, and when it ends
// (the client closed it, or its process died, SIGKILL included) the server
// gives its permits back, to the waiters first. Python's managers have no
// such thing: a client killed holding a manager Semaphore's tokens loses
// them for good.

func init() {
	register(&typeInfo{name: "OwnedSemaphore", create: newOwnedSemObj, methods: ownedSemMethods})
}

type ownedSemObj struct {
	mu      sync.Mutex
	permits int64
	free    int64
	holders map[*sconn]*semHolding
	waiters []*ownedSemWaiter
}

// semHolding is what one connection holds, and the hook that gives it back
// when the connection ends.
type semHolding struct {
	n    int64
	stop func() bool
}

type ownedSemWaiter struct {
	ch      chan struct{}
	sc      *sconn
	granted bool
}

func newOwnedSemObj(cc *callCtx, args []*pb.Value) (any, error) {
	if len(args) != 1 {
		return nil, errorf(ErrBadArgs, "an OwnedSemaphore takes one argument (its number of permits)")
	}
	n, err := argInt(args[0], "permits")
	if err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, errorf(ErrBadArgs, "an OwnedSemaphore needs at least one permit")
	}
	return &ownedSemObj{permits: n, free: n, holders: map[*sconn]*semHolding{}}, nil
}

func (s *ownedSemObj) getValue(cc *callCtx) (*pb.Value, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return intValue(s.free), nil
}

// grant records a permit as sc's. s.mu held.
func (s *ownedSemObj) grant(sc *sconn) {
	h := s.holders[sc]
	if h == nil {
		h = &semHolding{}
		h.stop = context.AfterFunc(sc.ctx, func() { s.connDied(sc) })
		s.holders[sc] = h
	}
	h.n++
}

// give hands n permits to the waiters of live connections, in order, and
// frees the rest. s.mu held.
func (s *ownedSemObj) give(n int64) {
	for n > 0 && len(s.waiters) > 0 {
		w := s.waiters[0]
		s.waiters = s.waiters[1:]
		if w.sc.ctx.Err() != nil {
			// Its connection is ending: the waiter is being cancelled,
			// and a permit granted now could never be given back.
			continue
		}
		s.grant(w.sc)
		w.granted = true
		close(w.ch)
		n--
	}
	s.free += n
}

// connDied gives back every permit sc holds.
func (s *ownedSemObj) connDied(sc *sconn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.holders[sc]
	if h == nil {
		return
	}
	delete(s.holders, sc)
	s.give(h.n)
}

func (s *ownedSemObj) acquire(cc *callCtx, block bool) (bool, error) {
	s.mu.Lock()
	if cc.sc.ctx.Err() != nil {
		s.mu.Unlock()
		return false, cc.sc.ctx.Err()
	}
	if s.free > 0 && len(s.waiters) == 0 {
		s.free--
		s.grant(cc.sc)
		s.mu.Unlock()
		return true, nil
	}
	if !block {
		s.mu.Unlock()
		return false, nil
	}
	w := &ownedSemWaiter{ch: make(chan struct{}), sc: cc.sc}
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()
	select {
	case <-w.ch:
		return true, nil
	case <-cc.ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		if w.granted {
			return true, nil
		}
		for i, x := range s.waiters {
			if x == w {
				s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
				break
			}
		}
		return false, cc.ctx.Err()
	}
}

func (s *ownedSemObj) release(sc *sconn, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.holders[sc]
	if h == nil || h.n < n {
		held := int64(0)
		if h != nil {
			held = h.n
		}
		return errorf(ErrNotHeld, "release of %d OwnedSemaphore permits by a connection holding %d", n, held)
	}
	if h.n -= n; h.n == 0 {
		h.stop()
		delete(s.holders, sc)
	}
	s.give(n)
	return nil
}

var ownedSemMethods = methods(
	opt(blocking(mk("Acquire", 1, func(cc *callCtx, s *ownedSemObj, a []*pb.Value) (*pb.Value, error) {
		block := true
		if len(a) > 0 {
			b, err := argBool(a[0], "blocking")
			if err != nil {
				return nil, err
			}
			block = b
		}
		ok, err := s.acquire(cc, block)
		if err != nil {
			return nil, err
		}
		return boolValue(ok), nil
	})), 1),
	opt(mk("Release", 1, func(cc *callCtx, s *ownedSemObj, a []*pb.Value) (*pb.Value, error) {
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
		return nil, s.release(cc.sc, n)
	}), 1),
	mk("Value", 0, func(cc *callCtx, s *ownedSemObj, a []*pb.Value) (*pb.Value, error) {
		return s.getValue(cc)
	}),
	mk("Held", 0, func(cc *callCtx, s *ownedSemObj, a []*pb.Value) (*pb.Value, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if h := s.holders[cc.sc]; h != nil {
			return intValue(h.n), nil
		}
		return intValue(0), nil
	}),
)

// OwnedSemaphore is a proxy to a semaphore whose permits belong to the
// client connection that acquired them (all proxies of one Client share
// that connection; a proxy handed to a child process connects on its
// own, so there the child holds its permits). Only the holding connection
// may release a permit (ErrNotHeld otherwise), the value never exceeds
// the number of permits, and when the holding client closes or dies —
// SIGKILL included — the server gives its permits back, to waiting
// clients first. CPython's managers have no equivalent.
type OwnedSemaphore struct{ Semaphore }

// NewOwnedSemaphore creates a semaphore of permits owned permits.
func NewOwnedSemaphore(ctx context.Context, c *Client, permits int) (*OwnedSemaphore, error) {
	return newProxy[OwnedSemaphore](ctx, c, "OwnedSemaphore", permits)
}

// Held returns the number of permits this proxy's connection holds.
func (s *OwnedSemaphore) Held(ctx context.Context) (int, error) {
	return callAs[int](ctx, &s.base, "Held")
}
