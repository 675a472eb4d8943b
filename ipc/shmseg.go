// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/multiproc/multiproc/internal/base/futex"
)

// Segments of shared-memory frames (PROTOCOL.md, "Shared-memory frames").
//
// On this kind of machine the kernel's per-page work dominates: filling a
// new memfd runs at about 0.2 GB/s and mapping plus unmapping one at about
// 1 GB/s, while copying into a mapping that already exists runs at memory
// speed. So a sender keeps a few segments mapped and reuses each one once
// the receiver has marked it free, and a receiver keeps the mappings of
// the segments it has seen (recognised by their inode). The memfd still
// travels with every frame, so each frame stands alone: any process that
// reads the socket can map it, whatever it received before.

const (
	segHeader = 64         // bytes before the payload; keeps it 64-byte aligned
	segMagic  = 0x4753504d // "MPSG", little-endian
	// The word at offBusy is segBusy from the sender's write until the
	// receiver has consumed the payload, then segFree: the sender reuses
	// only free segments. A sender that waits for it sets segBusyWaited,
	// and the receiver that frees it then wakes the futex word.
	offBusy       = 4
	segFree       = 0
	segBusy       = 1
	segBusyWaited = 2
	// segWaitSlice bounds one futex sleep of a sender waiting for a
	// segment, so that its context, Close or the peer's hang-up end the
	// wait within that time.
	segWaitSlice = 5 * time.Millisecond
	// offID holds 8 random bytes naming the segment: with the inode, what
	// a receiver recognises a segment by.
	offID = 16
	// segRound is the granularity of segment sizes, so that payloads of
	// similar sizes share segments.
	segRound = 256 << 10
	// sendSegs is how many segments a Conn keeps for sending; when all
	// are busy (the receiver is behind) a send waits for one.
	sendSegs = 4
	// recvMaps is how many segments' mappings a Conn keeps for receiving.
	recvMaps = 8
)

// shmSeals are the seals every segment carries: its size cannot change,
// so a receiver's mapping can never fault past the end of the file.
const shmSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW

// A segment is one memfd and its read-write mapping, on the sending side.
type segment struct {
	fd   int
	dev  uint64 // the memfd's identity, for a receiver that reopens it (procHeader)
	ino  uint64
	id   uint64 // the random id in its header (offID)
	mem  []byte
	n    atomic.Int64 // the length of the payload last sent in it (HandBack)
	sent uint64       // when it was last taken (shmState.sent), to wait on the oldest
	// Under shmState.mu: how many HandedBack payloads in it are not yet
	// freed, and whether the Conn closed meanwhile (the last free then
	// unmaps it).
	takers int
	gone   bool
}

func (s *segment) busy() *uint32 { return (*uint32)(unsafe.Pointer(&s.mem[offBusy])) }

// newSegment makes a sealed memfd of size bytes, mapped read-write and
// populated, with its header written.
func newSegment(size int) (*segment, error) {
	fd, err := unix.MemfdCreate("multiproc-ipc-frame", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("ipc: shared-memory frame: %w", os.NewSyscallError("memfd_create", err))
	}
	fail := func(op string, err error) (*segment, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("ipc: shared-memory frame: %w", os.NewSyscallError(op, err))
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return fail("ftruncate", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, shmSeals|unix.F_SEAL_SEAL); err != nil {
		return fail("fcntl(F_ADD_SEALS)", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail("mmap", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Munmap(mem)
		return fail("fstat", err)
	}
	id := rand.Uint64()
	binary.LittleEndian.PutUint32(mem, segMagic)
	binary.LittleEndian.PutUint64(mem[offID:], id)
	return &segment{fd: fd, dev: st.Dev, ino: st.Ino, id: id, mem: mem}, nil
}

func (s *segment) close() {
	unix.Munmap(s.mem)
	unix.Close(s.fd)
}

// A mapping is a receiver's read-only mapping of a segment, shared by the
// Conn's cache and the RecvShared slices not yet released.
type mapping struct {
	ino  uint64
	id   uint64
	mem  []byte
	refs atomic.Int32 // the cache's reference + one per user
	// handedBack is set by HandBack: the release of the payload then
	// leaves the segment busy, for its sender to free (FreeHandedBack).
	handedBack atomic.Bool
}

func (m *mapping) busy() *uint32 { return (*uint32)(unsafe.Pointer(&m.mem[offBusy])) }

func (m *mapping) unref() {
	if m.refs.Add(-1) == 0 {
		unix.Munmap(m.mem)
	}
}

// shmState is a Conn's segments: sending (under mu) and received
// mappings (under mu too: both are short critical sections).
type shmState struct {
	mu     sync.Mutex
	sent   uint64 // segments taken so far
	send   []*segment
	recv   []*mapping // most recently used last
	closed bool
}

// closedShm stands for the state of a Conn closed before it used any.
var closedShm = &shmState{closed: true}

func (c *Conn) shmState() *shmState {
	c.shmOnce.Do(func() { c.shm = new(shmState) })
	if c.shm == nil {
		return closedShm
	}
	return c.shm
}

// acquireSegment returns a free segment of at least size bytes, marked
// busy. While all of the Conn's sendSegs segments are held by the
// receiver it waits, as a send waits for room in a full socket buffer:
// for one to be freed, ctx to end, the Conn to close, or the peer to
// hang up.
func (c *Conn) acquireSegment(ctx context.Context, size int) (*segment, error) {
	st := c.shmState()
	size = (size + segRound - 1) / segRound * segRound
	for {
		s, oldest, err := st.tryAcquire(size)
		if s != nil || err != nil {
			return s, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if c.closed.Load() {
			return nil, ErrClosed
		}
		if c.peerGone() {
			return nil, c.mapErr(unix.EPIPE)
		}
		// Sleep on the segment sent first, which the receiver frees
		// first unless it holds it (RecvShared): busy 2 asks the
		// receiver for a wake-up. The timeout bounds how late ctx, Close
		// or a hang-up are noticed.
		w := oldest.busy()
		if atomic.CompareAndSwapUint32(w, segBusy, segBusyWaited) || atomic.LoadUint32(w) == segBusyWaited {
			futex.Wait(w, segBusyWaited, segWaitSlice)
		}
	}
}

// tryAcquire returns a free segment of at least size bytes (reusing one,
// making one, or replacing a free one that is too small), marked busy;
// or, when all are busy, nil and the one sent first.
func (st *shmState) tryAcquire(size int) (*segment, *segment, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return nil, nil, ErrClosed
	}
	st.sent++
	replace := -1
	var oldest *segment
	for i, s := range st.send {
		if atomic.LoadUint32(s.busy()) != segFree {
			if oldest == nil || s.sent < oldest.sent {
				oldest = s
			}
			continue
		}
		if len(s.mem) >= size {
			atomic.StoreUint32(s.busy(), segBusy)
			s.sent = st.sent
			return s, nil, nil
		}
		replace = i
	}
	if len(st.send) == sendSegs && replace < 0 {
		return nil, oldest, nil
	}
	s, err := newSegment(size)
	if err != nil {
		return nil, nil, err
	}
	atomic.StoreUint32(s.busy(), segBusy)
	s.sent = st.sent
	if replace >= 0 {
		st.send[replace].close()
		st.send[replace] = s
	} else {
		st.send = append(st.send, s)
	}
	return s, nil, nil
}

// peerGone reports whether the socket the Conn writes to has hung up.
func (c *Conn) peerGone() bool {
	gone := false
	c.wraw.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if n, _ := unix.Poll(p, 0); n > 0 && p[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
			gone = true
		}
	})
	return gone
}

// mapFrame returns the mapping of the segment in f (kept from an earlier
// frame when it is the same memfd) with one reference for the caller, and
// checks that it holds a payload of n bytes.
func (st *shmState) mapFrame(f *os.File, n int64) (*mapping, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("ipc: shared-memory frame: %w", err)
	}
	var m *mapping
	var merr error
	if err := raw.Control(func(fd uintptr) {
		var sb unix.Stat_t
		if err := unix.Fstat(int(fd), &sb); err != nil {
			merr = fmt.Errorf("ipc: shared-memory frame: %w", os.NewSyscallError("fstat", err))
			return
		}
		if sb.Size < segHeader || n > sb.Size-segHeader {
			merr = fmt.Errorf("%w: shared-memory frame of %d bytes in a memfd of %d", ErrBadFrame, n, sb.Size)
			return
		}
		var idb [8]byte
		if k, err := unix.Pread(int(fd), idb[:], offID); err != nil || k != len(idb) {
			merr = fmt.Errorf("%w: shared-memory frame's memfd is not a segment", ErrBadFrame)
			return
		}
		id := binary.LittleEndian.Uint64(idb[:])
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.closed {
			merr = ErrClosed
			return
		}
		for i, c := range st.recv {
			if c.ino == sb.Ino && c.id == id && int64(len(c.mem)) == sb.Size {
				copy(st.recv[i:], st.recv[i+1:])
				st.recv[len(st.recv)-1] = c
				c.refs.Add(1)
				m = c
				return
			}
		}
		seals, err := unix.FcntlInt(fd, unix.F_GET_SEALS, 0)
		if err != nil || seals&shmSeals != shmSeals {
			merr = fmt.Errorf("%w: shared-memory frame's memfd is not sealed", ErrBadFrame)
			return
		}
		// Read-write: the receiver marks the segment free in its header.
		mem, err := unix.Mmap(int(fd), 0, int(sb.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			merr = fmt.Errorf("ipc: shared-memory frame: %w", os.NewSyscallError("mmap", err))
			return
		}
		if binary.LittleEndian.Uint32(mem) != segMagic {
			unix.Munmap(mem)
			merr = fmt.Errorf("%w: shared-memory frame's memfd is not a segment", ErrBadFrame)
			return
		}
		m = &mapping{ino: sb.Ino, id: id, mem: mem}
		m.refs.Store(2) // the cache's and the caller's
		if len(st.recv) == recvMaps {
			st.recv[0].unref()
			st.recv = append(st.recv[:0], st.recv[1:]...)
		}
		st.recv = append(st.recv, m)
	}); err != nil {
		return nil, fmt.Errorf("ipc: shared-memory frame: %w", err)
	}
	return m, merr
}

// close releases the sending segments and the cached mappings (those a
// RecvShared caller still holds stay until released).
func (st *shmState) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	for _, s := range st.send {
		if s.takers > 0 {
			s.gone = true // unmapped by the last HandedBack free
			continue
		}
		s.close()
	}
	st.send = nil
	for _, m := range st.recv {
		m.unref()
	}
	st.recv = nil
}
