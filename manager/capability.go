// SPDX-License-Identifier: Apache-2.0

package manager

import (
	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// A connection reaches an object only while it holds a reference to it
// (sc.refs). It gets one by creating the object (add), by receiving a
// proxy in a response (give), or by presenting the object's secret in a
// refs{+1} (claim: a proxy handed over in a HandleDesc). A lookup of a
// published name (names.go) is a fourth way and grants through the same
// function, grantLocked. Ids alone open nothing: an
// object the connection does not hold is reported as unknown, exactly
// like one that does not exist.

// lookupHeld returns object id if sc holds a reference to it.
func (s *Server) lookupHeld(sc *sconn, id uint64) (*entry, error) {
	s.mu.Lock()
	e := s.objs[id]
	if e != nil && sc != nil && sc.refs[id] <= 0 {
		e = nil
	}
	s.mu.Unlock()
	if e == nil {
		return nil, errorf(ErrUnknownObject, "no object %d", id)
	}
	return e, nil
}

// grantLocked gives sc n more references to e (and so its capability).
func (s *Server) grantLocked(sc *sconn, e *entry, n int64) {
	e.refs += n
	sc.refs[e.id] += n
}

// checkHeld fails unless sc holds every proxy inside vs: a request may
// store or pass only objects its connection can reach.
func (s *Server) checkHeld(sc *sconn, vs []*pb.Value) error {
	if sc == nil {
		return nil
	}
	var bad *pb.ProxyRef
	for _, v := range vs {
		if !hasRefs(v) {
			continue
		}
		s.mu.Lock()
		walkRefs(v, func(r *pb.ProxyRef) {
			if bad == nil && (s.objs[r.Id] == nil || sc.refs[r.Id] <= 0) {
				bad = r
			}
		})
		s.mu.Unlock()
		if bad != nil {
			return errorf(ErrUnknownObject, "no object %d", bad.Id)
		}
	}
	return nil
}
