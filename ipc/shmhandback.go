// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"errors"
	"sync"
	"unsafe"
)

// Handing a segment back (PROTOCOL.md, "Shared-memory frames"). A
// receiver that answers a shared-memory frame with bytes that already lie
// in it (a pool worker whose task returns its argument, or a piece of it,
// which it read in place) need not copy them into a segment of its own:
// the sender still has them, in the segment it sent. HandBack keeps that
// segment busy past the receiver's release; the answer names it by the
// token HandBack returns; the sender reads the bytes there (HandedBack)
// and then frees the segment itself.

// ErrNotShared is HandBack's error for bytes that are not a payload
// RecvShared returned in place and that is not yet released.
var ErrNotShared = errors.New("ipc: not a shared-memory payload held by RecvShared")

// HandBack hands the segment of data back to its sender. data is a
// payload that RecvShared returned in place (or a part of it), not yet
// released. Its release then only drops the receiver's mapping: the
// segment stays busy, and its sender does not reuse it until it calls
// free from HandedBack(token). Between the two, its bytes are the
// sender's to read: the receiver must not write to them once its answer
// is sent. The token names the segment to its sender; the receiver sends
// it in its answer. Safe for concurrent use.
func (c *Conn) HandBack(data []byte) (token uint64, err error) {
	if len(data) == 0 {
		return 0, ErrNotShared
	}
	st := c.shmState()
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, m := range st.recv {
		if within(m.mem[segHeader:], data) && m.refs.Load() > 1 {
			m.handedBack.Store(true)
			return m.id, nil
		}
	}
	return 0, ErrNotShared
}

// HandedBack returns the payload of the frame that c sent in the segment
// named by token, which its receiver handed back (HandBack), and free,
// which makes the segment free for c to reuse: the caller calls it once
// it is done with payload, and must not touch payload after. ok is false
// when c has no such segment (the token is not one of its segments', or c
// is closed). payload stays valid until free, even if c is closed
// meanwhile. Calling it for a segment that the receiver did not hand
// back would let c overwrite a payload the receiver still reads: only
// tokens from the receiver's HandBack may be given. Safe for concurrent
// use.
func (c *Conn) HandedBack(token uint64) (payload []byte, free func(), ok bool) {
	st := c.shmState()
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, s := range st.send {
		if s.id == token {
			n := s.n.Load()
			if n < 0 || n > int64(len(s.mem)-segHeader) {
				return nil, nil, false
			}
			p := s.mem[segHeader : segHeader+int(n) : segHeader+int(n)]
			s.takers++
			var once sync.Once
			return p, func() { once.Do(func() { st.freeHandedBack(s) }) }, true
		}
	}
	return nil, nil, false
}

// freeHandedBack is the free of HandedBack: the segment becomes free
// for reuse, or, when the Conn closed meanwhile, is unmapped once no
// other taker holds it.
func (st *shmState) freeHandedBack(s *segment) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s.takers--
	if s.gone {
		if s.takers == 0 {
			s.close()
		}
		return
	}
	freeBusy(s.busy())
}

// within reports whether b lies inside mem.
func within(mem, b []byte) bool {
	if len(mem) == 0 || len(b) == 0 {
		return false
	}
	m, p := uintptr(unsafe.Pointer(unsafe.SliceData(mem))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= m && p-m <= uintptr(len(mem)-len(b)) && len(b) <= len(mem)
}
