// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// Bounds on the calls a server runs at once.
//
// A call that may wait (Acquire, Get, Join, a registered type's method)
// runs in a goroutine of its own, holding its request's arguments and,
// once it returns, its answer until that is written. Those calls are
// counted, with the bytes of their requests, per connection and per
// server. A connection at its bound is not read from until one of its
// calls ends (backpressure: the client's further requests wait in the
// socket, and in the client; none is refused). Every connection may have
// ReservedCallsPerConn calls running even when the server is at its
// bound, so one client's flood never stops another client, even one whose
// goroutines wait for each other (a Get waiting for a Put) through one
// connection.

// Default bounds (MaxCalls, MaxCallBytes).
const (
	DefaultMaxCallsPerConn     = 1024
	DefaultMaxCalls            = 16384
	DefaultMaxCallBytesPerConn = 64 << 20
	DefaultMaxCallBytes        = 512 << 20

	// ReservedCallsPerConn calls (at most the per-connection bound) run
	// on every connection whatever the server-wide bounds.
	ReservedCallsPerConn = 16
)

// hangupCheck is how often a connection that is not read from (at its
// bound) is checked for the client's leaving.
const hangupCheck = 100 * time.Millisecond

// MaxCalls bounds the calls that may wait (Acquire, Get, Join,
// methods of registered types) a server runs at once: perConn for one
// connection (DefaultMaxCallsPerConn) and total for the server
// (DefaultMaxCalls), beyond which a connection with ReservedCallsPerConn
// calls running is not read from until a call ends. A client whose goroutines have more
// than perConn such calls waiting on one connection at once, and need one
// more request read to release them, waits forever: use more Clients.
// Values <= 0 keep the default. For Start, the server process gets them.
func MaxCalls(perConn, total int) Option {
	return func(o *options) {
		if perConn > 0 {
			o.maxCallsConn = perConn
		}
		if total > 0 {
			o.maxCalls = total
		}
	}
}

// MaxCallBytes bounds the request bytes that the running calls of
// MaxCalls hold: perConn per connection (DefaultMaxCallBytesPerConn)
// and total for the server (DefaultMaxCallBytes). A connection's first
// call always runs, whatever its size (frames are bounded by
// MaxFrameSize). Values <= 0 keep the default.
func MaxCallBytes(perConn, total int64) Option {
	return func(o *options) {
		if perConn > 0 {
			o.maxCallBytesConn = perConn
		}
		if total > 0 {
			o.maxCallBytes = total
		}
	}
}

// budget counts a server's running calls.
type budget struct {
	mu      sync.Mutex // also guards each sconn's calls and bytes
	calls   int
	bytes   int64
	waiters int
	freed   chan struct{} // closed (and replaced) when a call ends and someone waits
}

// fitsLocked tells whether sc may start a call of size bytes.
func (sc *sconn) fitsLocked(size int64) bool {
	o, b := &sc.s.opts, &sc.s.budget
	if sc.ncalls == 0 {
		return true // whatever its size
	}
	if sc.ncalls >= o.maxCallsConn || sc.nbytes+size > o.maxCallBytesConn {
		return false
	}
	return sc.ncalls < ReservedCallsPerConn || (b.calls < o.maxCalls && b.bytes+size <= o.maxCallBytes)
}

// reserve takes a place for a call of size bytes, waiting (and so not
// reading the connection) while sc or the server is at its bound. It
// returns false when the connection ends meanwhile (the client left, or
// the server closed it).
func (sc *sconn) reserve(size int64) bool {
	b := &sc.s.budget
	b.mu.Lock()
	for !sc.fitsLocked(size) {
		if b.freed == nil {
			b.freed = make(chan struct{})
		}
		ch := b.freed
		b.waiters++
		b.mu.Unlock()
		// Answers to requests read before go out first.
		sc.w.Flush()
		t := time.NewTimer(hangupCheck)
		select {
		case <-ch:
		case <-sc.ctx.Done():
		case <-t.C:
		}
		t.Stop()
		b.mu.Lock()
		b.waiters--
		if sc.ctx.Err() != nil || sc.c.PeerClosed() {
			b.mu.Unlock()
			return false
		}
	}
	sc.ncalls++
	sc.nbytes += size
	b.calls++
	b.bytes += size
	b.mu.Unlock()
	return true
}

// unreserve gives back what reserve took.
func (sc *sconn) unreserve(size int64) {
	b := &sc.s.budget
	b.mu.Lock()
	sc.ncalls--
	sc.nbytes -= size
	b.calls--
	b.bytes -= size
	if b.waiters > 0 && b.freed != nil {
		close(b.freed) // wakes them all; each checks its bounds again
		b.freed = nil
	}
	b.mu.Unlock()
}

// ServerStats is a server's load at one moment (Server.Stats,
// Client.Stats).
type ServerStats struct {
	Conns      int   // connections served
	Objects    int   // live shared objects
	Calls      int   // calls that may wait, running (MaxCalls)
	CallBytes  int64 // request bytes those calls hold
	Goroutines int   // goroutines of the server's process
	HeapBytes  int64 // heap bytes in live and not yet swept objects of the server's process
}

// Stats returns the server's load.
func (s *Server) Stats() ServerStats {
	var st ServerStats
	s.mu.Lock()
	st.Conns, st.Objects = len(s.conns), len(s.objs)
	s.mu.Unlock()
	s.budget.mu.Lock()
	st.Calls, st.CallBytes = s.budget.calls, s.budget.bytes
	s.budget.mu.Unlock()
	st.Goroutines = runtime.NumGoroutine()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		st.HeapBytes = int64(sample[0].Value.Uint64())
	}
	return st
}

func statsValue(st ServerStats) *pb.Value {
	kv := func(k string, v int64) *pb.Entry { return &pb.Entry{Key: strValue(k), Value: intValue(v)} }
	return &pb.Value{Kind: &pb.Value_Map{Map: &pb.Map{Entries: []*pb.Entry{
		kv("conns", int64(st.Conns)), kv("objects", int64(st.Objects)), kv("calls", int64(st.Calls)),
		kv("call_bytes", st.CallBytes), kv("goroutines", int64(st.Goroutines)), kv("heap_bytes", st.HeapBytes),
	}}}}
}

// Stats returns the load of the server at the other end (the stats
// request): its connections, objects, running calls, goroutines and heap.
func (c *Client) Stats(ctx context.Context) (ServerStats, error) {
	v, err := c.do(ctx, &pb.Request{Op: &pb.Request_Stats{Stats: &pb.Stats{}}})
	if err != nil {
		return ServerStats{}, err
	}
	m, err := decodeAs[map[string]int64](c, v)
	if err != nil {
		return ServerStats{}, err
	}
	return ServerStats{Conns: int(m["conns"]), Objects: int(m["objects"]), Calls: int(m["calls"]),
		CallBytes: m["call_bytes"], Goroutines: int(m["goroutines"]), HeapBytes: m["heap_bytes"]}, nil
}
