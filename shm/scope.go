// SPDX-License-Identifier: Apache-2.0

package shm

import (
	"errors"
	"io/fs"
	"sync"
)

// Scope owns the named segments created through it (CPython's
// SharedMemoryManager): Close unlinks every one of them that is still
// linked, so a program that makes many named segments for one piece of
// work removes them all with one deferred call.
//
// A segment is created through a scope by passing InScope to Create,
// CreateValue, CreateArray or NewShareableList. Its segments are always
// registered with the process tree's resource tracker, so if the program
// dies before Close (SIGKILL included), the tracker unlinks them once
// every process of the tree has ended. Unlike CPython's, a Scope is not a
// server process: it costs nothing beyond the segments.
//
// Close does not unmap anything: the Segments, Values, Arrays and
// ShareableLists stay usable until their own Close, and the kernel frees
// the memory when the last process unmaps it; processes that attached
// keep their mappings too. A segment unlinked before Close (Unlink) is
// forgotten by the scope. The methods of Scope are safe for concurrent
// use.
type Scope struct {
	mu     sync.Mutex
	segs   []*Segment // in creation order
	closed bool
}

// NewScope returns an empty scope.
func NewScope() *Scope { return &Scope{} }

// InScope makes Create (or CreateValue, CreateArray, NewShareableList)
// create the named segment through sc, which unlinks it at Close. After
// sc's Close it fails with ErrClosed and creates nothing. It cannot be
// combined with Untracked: a scope's segments are tracked.
func InScope(sc *Scope) Option { return func(o *options) { o.scope = sc } }

// errScopeUntracked is InScope given with Untracked.
var errScopeUntracked = errors.New("shm: InScope and Untracked cannot be combined: a scope's segments are tracked")

// check fails once the scope is closed (before anything is created).
func (sc *Scope) check() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.closed {
		return ErrClosed
	}
	return nil
}

// add records a new segment; it fails if the scope was closed meanwhile,
// and the caller then removes the segment.
func (sc *Scope) add(s *Segment) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.closed {
		return ErrClosed
	}
	s.scope = sc
	sc.segs = append(sc.segs, s)
	return nil
}

// forget drops a segment that was unlinked.
func (sc *Scope) forget(s *Segment) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for i, x := range sc.segs {
		if x == s {
			sc.segs = append(sc.segs[:i], sc.segs[i+1:]...)
			return
		}
	}
}

// Names returns the names of the segments the scope will unlink, in the
// order they were created.
func (sc *Scope) Names() []string {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	names := make([]string, len(sc.segs))
	for i, s := range sc.segs {
		names[i] = s.name
	}
	return names
}

// Close unlinks every segment created through the scope and not unlinked
// yet, in the order they were created, and unregisters each from the
// resource tracker. A segment that someone else unlinked meanwhile is
// skipped. Later creations through the scope fail with ErrClosed. Close
// is idempotent; it returns the errors of the unlinks that failed.
func (sc *Scope) Close() error {
	sc.mu.Lock()
	segs := sc.segs
	sc.segs, sc.closed = nil, true
	sc.mu.Unlock()
	var errs []error
	for _, s := range segs {
		err := s.Unlink()
		if errors.Is(err, fs.ErrNotExist) {
			// Unlinked behind the scope's back (by another process):
			// the tracker must forget it all the same.
			err = nil
			if t := tracking; t != nil {
				err = t.Unregister(s.name)
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
