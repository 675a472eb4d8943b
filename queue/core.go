// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"github.com/multiproc/multiproc/internal/base/cachecopy"
	"github.com/multiproc/multiproc/internal/base/futex"
	"github.com/multiproc/multiproc/internal/base/race"
	"github.com/multiproc/multiproc/internal/base/spin"
	"github.com/multiproc/multiproc/shm"
	"github.com/multiproc/multiproc/syncprim"
)

// The shared layout: one anonymous segment holding a 4 KiB header and the
// data ring. See doc.go ("Design") for the protocol; PROTOCOL notes are in
// the comments of put, get and the repair functions.
const (
	magicWord = 0x5551504d // "MPQU"
	layoutVer = 1
	hdrSize   = 4096
	frameHdr  = 8 // u32 payload length, u8 tag, 3 bytes zero

	offMagic    = 0
	offVersion  = 4
	offKind     = 8
	offMaxSize  = 16
	offDataSize = 24
	offMaxItem  = 32
	offMinCap   = 40

	offLockP = 64  // producers' lock
	offLockC = 128 // consumers' lock

	// Producer-private line (written under the producers' lock).
	offTail       = 192
	offJValidP    = 200
	offJTail      = 208
	offJPutSeq    = 216
	offCachedHead = 224

	// Consumer-private line (written under the consumers' lock).
	offJValidC   = 256
	offJHead     = 264
	offJGetSeq   = 272
	offCachedPut = 280

	offPutSeq   = 320 // items ever put: published by producers
	offHead     = 384 // ring position of the oldest frame: published by consumers
	offGetSeq   = 392 // items ever taken
	offCapacity = 448 // current ring size (a power of two), under both locks
	offLastGrow = 456 // when the ring last grew (unix ns), under both locks

	offNotEmpty = 512 // futex words: bit 0 "someone may sleep", the rest a sequence
	offNotFull  = 576
	offJoin     = 640
	offDone     = 648 // JoinableQueue: TaskDone calls so far
)

type kind uint32

const (
	kindQueue kind = iota + 1
	kindSimple
	kindJoinable
)

func (k kind) String() string {
	switch k {
	case kindQueue:
		return "Queue"
	case kindSimple:
		return "SimpleQueue"
	case kindJoinable:
		return "JoinableQueue"
	}
	return fmt.Sprintf("kind(%d)", uint32(k))
}

// Frame tags: how the payload was encoded.
const (
	tagRaw     = 1 // []byte as is
	tagProto   = 2 // protobuf wire format
	tagGob     = 3 // one gob stream
	tagInt     = 4 // int64, 8 bytes little-endian
	tagUint    = 5 // uint64
	tagFloat   = 6 // float64 bits
	tagComplex = 7 // two float64
	tagBool    = 8 // one byte in 8
	tagString  = 9 // the bytes of the string
	maxTag     = tagString
)

// core is the untyped queue shared by Queue, SimpleQueue and
// JoinableQueue: this process's handle to the segment.
type core struct {
	seg  *shm.Segment
	data []byte // the ring area (dataSize bytes)
	p, c *syncprim.Lock
	kind kind

	maxsize  uint64
	dataSize uint64
	maxItem  int64
	minCap   uint64

	// Words in shared memory.
	tail, jValidP, jTail, jPutSeq, cachedHead *uint64
	jValidC, jHead, jGetSeq, cachedPut        *uint64
	putSeq, head, getSeq, capacity, done      *uint64
	lastGrow                                  *uint64
	notEmpty, notFull, join                   *uint32

	mu     sync.RWMutex // held shared by every operation, exclusively by Close
	closed atomic.Bool
	spin   spin.Spinner // how long a consumer polls for an item before it sleeps
	log    *zap.Logger
}

func (q *core) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&q.seg.Bytes()[off])) }
func (q *core) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&q.seg.Bytes()[off])) }

func (q *core) bind() {
	q.data = q.seg.Bytes()[hdrSize:]
	q.tail, q.jValidP, q.jTail, q.jPutSeq, q.cachedHead = q.u64(offTail), q.u64(offJValidP), q.u64(offJTail), q.u64(offJPutSeq), q.u64(offCachedHead)
	q.jValidC, q.jHead, q.jGetSeq, q.cachedPut = q.u64(offJValidC), q.u64(offJHead), q.u64(offJGetSeq), q.u64(offCachedPut)
	q.putSeq, q.head, q.getSeq, q.capacity, q.done = q.u64(offPutSeq), q.u64(offHead), q.u64(offGetSeq), q.u64(offCapacity), q.u64(offDone)
	q.notEmpty, q.notFull, q.join = q.u32(offNotEmpty), q.u32(offNotFull), q.u32(offJoin)
	q.lastGrow = q.u64(offLastGrow)
}

// newCore creates the segment and its locks.
func newCore(k kind, o *options) (*core, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	seg, err := shm.New(hdrSize + int(o.dataSize))
	if err != nil {
		return nil, fmt.Errorf("queue: create segment: %w", err)
	}
	q := &core{seg: seg, kind: k, log: o.log}
	m := seg.Bytes()
	binary.LittleEndian.PutUint32(m[offVersion:], layoutVer)
	binary.LittleEndian.PutUint32(m[offKind:], uint32(k))
	binary.LittleEndian.PutUint64(m[offMaxSize:], uint64(o.maxsize))
	binary.LittleEndian.PutUint64(m[offDataSize:], o.dataSize)
	binary.LittleEndian.PutUint64(m[offMaxItem:], uint64(o.maxItem))
	binary.LittleEndian.PutUint64(m[offMinCap:], o.minCap)
	binary.LittleEndian.PutUint64(m[offCapacity:], o.minCap)
	if q.p, err = syncprim.NewLock(syncprim.InSegment(seg, offLockP)); err == nil {
		q.c, err = syncprim.NewLock(syncprim.InSegment(seg, offLockC))
	}
	if err != nil {
		q.closeAll()
		return nil, fmt.Errorf("queue: create locks: %w", err)
	}
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&m[offMagic])), magicWord)
	if err := q.load(k); err != nil {
		q.closeAll()
		return nil, err
	}
	return q, nil
}

// load reads and checks the header, and binds the shared words.
func (q *core) load(k kind) error {
	m := q.seg.Bytes()
	if len(m) < hdrSize {
		return fmt.Errorf("%w: segment of %d bytes", ErrBadHandle, len(m))
	}
	if atomic.LoadUint32((*uint32)(unsafe.Pointer(&m[offMagic]))) != magicWord ||
		binary.LittleEndian.Uint32(m[offVersion:]) != layoutVer {
		return fmt.Errorf("%w: memory does not hold a queue of layout version %d", ErrBadHandle, layoutVer)
	}
	if got := kind(binary.LittleEndian.Uint32(m[offKind:])); got != k {
		return fmt.Errorf("%w: the handle is a %v, not a %v", ErrBadHandle, got, k)
	}
	q.kind = k
	q.maxsize = binary.LittleEndian.Uint64(m[offMaxSize:])
	q.dataSize = binary.LittleEndian.Uint64(m[offDataSize:])
	q.maxItem = int64(binary.LittleEndian.Uint64(m[offMaxItem:]))
	q.minCap = binary.LittleEndian.Uint64(m[offMinCap:])
	ds := q.dataSize
	if ds == 0 || ds&(ds-1) != 0 || uint64(len(m)-hdrSize) != ds || q.minCap == 0 || q.minCap > ds ||
		q.minCap&(q.minCap-1) != 0 || q.maxItem < 0 || uint64(q.maxItem)+frameHdr > ds || q.maxsize > 1<<62 {
		return fmt.Errorf("%w: inconsistent queue header", ErrBadHandle)
	}
	q.bind()
	if c := atomic.LoadUint64(q.capacity); c < q.minCap || c > ds || c&(c-1) != 0 {
		return fmt.Errorf("%w: inconsistent queue header", ErrBadHandle)
	}
	if q.log == nil {
		q.log = zap.NewNop()
	}
	return nil
}

func (q *core) closeAll() {
	if q.p != nil {
		q.p.Close()
	}
	if q.c != nil {
		q.c.Close()
	}
	q.seg.Close()
}

// handle describes the queue for another process: the segment's fd and
// descriptor behind a kind byte.
func (q *core) handle() ([]*os.File, []byte, error) {
	if !q.enter() {
		return nil, nil, ErrClosed
	}
	defer q.mu.RUnlock()
	files, sd, err := q.seg.MultiprocHandle()
	if err != nil {
		return nil, nil, fmt.Errorf("queue: %w", err)
	}
	desc := append([]byte{'Q', byte(q.kind)}, sd...)
	return files, desc, nil
}

// attachCore rebuilds a handle from MultiprocHandle's files and descriptor.
func attachCore(files []*os.File, desc []byte, k kind) (*core, error) {
	if len(desc) < 2 || desc[0] != 'Q' || kind(desc[1]) != k {
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("%w: descriptor is not a %v", ErrBadHandle, k)
	}
	seg := new(shm.Segment)
	if err := seg.MultiprocAttach(files, desc[2:]); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadHandle, err)
	}
	q := &core{seg: seg}
	if err := q.load(k); err != nil {
		seg.Close()
		return nil, err
	}
	var err error
	if q.p, err = syncprim.OpenLock(seg, offLockP); err == nil {
		q.c, err = syncprim.OpenLock(seg, offLockC)
	}
	if err != nil {
		q.closeAll()
		return nil, fmt.Errorf("%w: %w", ErrBadHandle, err)
	}
	return q, nil
}

// enter marks an operation in flight; it fails once Close has begun.
// The caller runs q.mu.RUnlock when done.
func (q *core) enter() bool {
	if q == nil {
		return false
	}
	q.mu.RLock()
	if q.closed.Load() {
		q.mu.RUnlock()
		return false
	}
	return true
}

// close releases this process's handle. Operations of other goroutines
// of this process that are waiting return ErrClosed; Close waits for them.
func (q *core) close() error {
	if q == nil || !q.closed.CompareAndSwap(false, true) {
		return nil
	}
	for _, w := range []*uint32{q.notEmpty, q.notFull, q.join} {
		atomic.AddUint32(w, 2)
		futex.WakeAll(w)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	var errs []error
	errs = append(errs, q.p.Close(), q.c.Close(), q.seg.Close())
	return errors.Join(errs...)
}

// lock takes l, repairing the queue when its previous holder died.
func (q *core) lock(ctx context.Context, l *syncprim.Lock, producer bool) error {
	err := l.Acquire(ctx)
	if err == syncprim.ErrOwnerDead {
		if producer {
			q.repairP()
		} else {
			q.repairC()
		}
		return nil
	}
	return err
}

// repairP completes or discards the producer commit that a dead process
// left behind. The journal holds absolute values, so replaying it is
// idempotent: either the journal was not marked valid (the frame beyond
// tail is invisible, as if the Put never happened) or it was (the frame
// was complete before the journal was written, and the Put completes).
func (q *core) repairP() {
	if atomic.LoadUint64(q.jValidP) != 0 {
		atomic.StoreUint64(q.tail, atomic.LoadUint64(q.jTail))
		race.Sync(unsafe.Pointer(q.tail))
		atomic.StoreUint64(q.putSeq, atomic.LoadUint64(q.jPutSeq))
		atomic.StoreUint64(q.jValidP, 0)
		q.log.Warn("queue: completed the Put of a process that died holding the producers' lock")
	} else {
		q.log.Warn("queue: a process died holding the producers' lock; its unfinished Put was discarded")
	}
	// The cached head is only ever behind the real one: still safe.
	signal(q.notEmpty)
}

// repairC is repairP for the consumers' side: the Get of the dead process
// either took its item (journal valid: the item is gone with the process)
// or did not (the item stays for the next consumer).
func (q *core) repairC() {
	if atomic.LoadUint64(q.jValidC) != 0 {
		race.Sync(unsafe.Pointer(q.tail))
		atomic.StoreUint64(q.head, atomic.LoadUint64(q.jHead))
		atomic.StoreUint64(q.getSeq, atomic.LoadUint64(q.jGetSeq))
		atomic.StoreUint64(q.jValidC, 0)
		q.log.Warn("queue: a process died holding the consumers' lock after taking an item; the item is lost")
	} else {
		q.log.Warn("queue: a process died holding the consumers' lock; the item it was taking stays queued")
	}
	signal(q.notFull)
}

// Crash points: tests make a child process die at one of them, holding a
// lock in the middle of a commit, to check the repairs.
const (
	crashPutWritten    = iota + 1 // frame copied in, journal not valid
	crashPutJournaled             // journal valid, nothing published
	crashTakeCopied               // item copied out, journal not valid
	crashTakeJournaled            // journal valid, nothing published
	crashGrowCopied               // growing: live bytes copied, capacity not published
)

// crashAt is the crash point a test selected, 0 for none.
var crashAt int

func crashPoint(at int) {
	if crashAt == at {
		os.Exit(crashExitCode)
	}
}

// crashExitCode is the exit code of a process stopped at a crash point.
const crashExitCode = 77

func pad8(n uint64) uint64 { return (n + 7) &^ 7 }

// length returns the number of items queued, exactly: the difference of
// two counters read while the second did not move.
func (q *core) length() uint64 {
	for {
		g := atomic.LoadUint64(q.getSeq)
		p := atomic.LoadUint64(q.putSeq)
		if atomic.LoadUint64(q.getSeq) == g {
			return p - g
		}
	}
}

// roomFor reports, without locks, whether a frame of need bytes might fit.
func (q *core) roomFor(need uint64) bool {
	if q.maxsize > 0 && q.length() >= q.maxsize {
		return false
	}
	used := atomic.LoadUint64(q.tail) - atomic.LoadUint64(q.head)
	return used+need <= q.dataSize
}

// put appends one frame. block selects Put (wait for room) or TryPut.
func (q *core) put(ctx context.Context, e encoded, block bool) error {
	if !q.enter() {
		return ErrClosed
	}
	defer q.mu.RUnlock()
	n := int64(e.size())
	if n > q.maxItem {
		return &ItemTooLargeError{Size: n, Max: q.maxItem}
	}
	need := frameHdr + pad8(uint64(n))
	// A blocking Put of a large frame waits up to growWait for the
	// consumers to make room before it grows the ring (see growWait).
	var growAt time.Time
	for {
		if err := q.lock(ctx, q.p, true); err != nil {
			return fmt.Errorf("%w: %w", ErrFull, err)
		}
		if q.closed.Load() {
			q.p.Release()
			return ErrClosed
		}
		mayGrow := !block || need < bigFrame || !growAt.IsZero() && !time.Now().Before(growAt)
		fits, grows := q.reserve(need, mayGrow)
		if fits {
			q.writeFrame(&e, need)
			q.p.Release()
			signal(q.notEmpty)
			return nil
		}
		q.p.Release()
		if !block {
			return ErrFull
		}
		if grows {
			// Only the wait before growing holds this Put back.
			if growAt.IsZero() {
				growAt = time.Now().Add(growWait)
			}
			if err := q.wait(ctx, q.notFull, func() bool { return q.roomNow(need) }, q.c, growAt); err != nil {
				return waitErr(ErrFull, err)
			}
			continue
		}
		if err := q.wait(ctx, q.notFull, func() bool { return q.roomFor(need) }, q.c, time.Time{}); err != nil {
			return waitErr(ErrFull, err)
		}
	}
}

// Large frames and the ring's growth. Growing the ring to hold a
// producer's whole lead costs a page fault per 4 KiB of fresh memory
// (and the copy of the live bytes) where a ring that stays small is
// reused while it is hot in the cache: for a stream of 1 MiB items
// between two processes, growing as far as the producer's lead ran
// three times slower (measured on the 2-CPU development VM). So a
// blocking Put of a frame of at least bigFrame bytes, whose ring already
// holds at least bigRingFrames such frames, first waits up to growWait
// for the consumers to make room (the futex wait every Get signals),
// and grows the ring only after that. The wait is bounded, so nothing
// can deadlock on it (a producer that puts items no consumer will take
// before the producer goes on still gets them all in); it is paid at
// most once per doubling of the ring, which shrinks back only after
// draining (shrink). TryPut never waits: it grows as before.
const (
	bigFrame      = 64 << 10
	bigRingFrames = 4
)

// growWait is a variable for tests only.
var growWait = 5 * time.Millisecond

// roomNow reports, without locks, whether a frame of need bytes fits in
// the ring at its current size (and MaxSize allows one more item).
func (q *core) roomNow(need uint64) bool {
	if q.maxsize > 0 && q.length() >= q.maxsize {
		return false
	}
	used := atomic.LoadUint64(q.tail) - atomic.LoadUint64(q.head)
	return used+need <= atomic.LoadUint64(q.capacity)
}

// reserve checks, with the producers' lock held, that a frame of need
// bytes may be appended now, growing the ring when it is too small. When
// the frame does not fit, grows reports that growing would make it fit
// but mayGrow forbade it (large frames, see growWait); a ring holding
// fewer than bigRingFrames such frames grows regardless.
func (q *core) reserve(need uint64, mayGrow bool) (fits, grows bool) {
	put := atomic.LoadUint64(q.putSeq)
	if q.maxsize > 0 && put-atomic.LoadUint64(q.getSeq) >= q.maxsize {
		return false, false
	}
	tail := atomic.LoadUint64(q.tail)
	capa := atomic.LoadUint64(q.capacity)
	if tail-atomic.LoadUint64(q.cachedHead)+need <= capa {
		return true, false
	}
	h := atomic.LoadUint64(q.head)
	race.Sync(unsafe.Pointer(q.tail))
	atomic.StoreUint64(q.cachedHead, h)
	if tail-h+need <= capa {
		return true, false
	}
	if tail-h > capa || tail-h+need > q.dataSize {
		return false, false // full (or scribbled-on memory: never grow from that)
	}
	if !mayGrow && capa >= bigRingFrames*need {
		return false, true
	}
	q.grow(need)
	return true, false
}

// grow doubles the ring until a frame of need bytes fits, with both
// locks held (the producers' one by the caller). Positions are
// monotonic and a byte at position p lives at p mod capacity, so going
// from c to 2c moves exactly the bytes whose position has bit c set from
// the lower half to the upper half, which no live byte occupies. The new
// capacity is published last, in one word: a process dying mid-copy
// leaves the old, intact layout.
func (q *core) grow(need uint64) {
	q.lock(context.Background(), q.c, false)
	defer q.c.Release()
	race.Sync(unsafe.Pointer(q.tail))
	tail := atomic.LoadUint64(q.tail)
	h := atomic.LoadUint64(q.head)
	capa := atomic.LoadUint64(q.capacity)
	for tail-h+need > capa {
		for p := h; p < tail; {
			end := min(tail, (p|(capa-1))+1)
			if p&capa != 0 {
				lo, hi := p&(capa-1), (end-1)&(capa-1)+1
				copy(q.data[lo+capa:hi+capa], q.data[lo:hi])
			}
			p = end
		}
		crashPoint(crashGrowCopied)
		capa *= 2
		atomic.StoreUint64(q.capacity, capa)
	}
	atomic.StoreUint64(q.lastGrow, uint64(time.Now().UnixNano()))
	race.Sync(unsafe.Pointer(q.tail))
}

// shrinkAfter is how long after growing the ring may shrink again, so
// that a queue that fills and drains in quick cycles does not give its
// pages back and fault them in again each time.
const shrinkAfter = time.Second

// shrink returns the ring to its minimum size when the queue is empty and
// the ring grew large (at least shrinkAfter ago), giving the pages back to
// the kernel. It takes both locks (producers' first, as everywhere).
func (q *core) shrink() {
	if q.lock(context.Background(), q.p, true) != nil {
		return
	}
	defer q.p.Release()
	q.lock(context.Background(), q.c, false)
	defer q.c.Release()
	capa := atomic.LoadUint64(q.capacity)
	if capa <= 4*q.minCap || atomic.LoadUint64(q.tail) != atomic.LoadUint64(q.head) ||
		time.Since(time.Unix(0, int64(atomic.LoadUint64(q.lastGrow)))) < shrinkAfter {
		return
	}
	atomic.StoreUint64(q.capacity, q.minCap)
	releaseMemory(q.data[q.minCap:capa])
}

// writeFrame copies the frame in at tail and commits it: journal first
// (absolute values, then the valid mark), then tail and putSeq (putSeq
// publishes the item to consumers), then the journal is cleared.
func (q *core) writeFrame(e *encoded, need uint64) {
	tail := atomic.LoadUint64(q.tail)
	capa := atomic.LoadUint64(q.capacity)
	word := func(pos uint64) []byte { return q.data[pos&(capa-1)&^7:] } // aligned unless scribbled on
	binary.LittleEndian.PutUint64(word(tail), uint64(e.size())|uint64(e.tag)<<32)
	if e.payload != nil {
		q.copyIn(tail+frameHdr, capa, e.payload)
	} else {
		switch e.n {
		case 1:
			word(tail + frameHdr)[0] = byte(e.bits[0])
		case 16:
			binary.LittleEndian.PutUint64(word(tail+frameHdr+8), e.bits[1])
			fallthrough
		case 8:
			binary.LittleEndian.PutUint64(word(tail+frameHdr), e.bits[0])
		}
	}
	crashPoint(crashPutWritten)
	put := atomic.LoadUint64(q.putSeq) + 1
	atomic.StoreUint64(q.jTail, tail+need)
	atomic.StoreUint64(q.jPutSeq, put)
	atomic.StoreUint64(q.jValidP, 1)
	crashPoint(crashPutJournaled)
	atomic.StoreUint64(q.tail, tail+need)
	race.Sync(unsafe.Pointer(q.tail))
	atomic.StoreUint64(q.putSeq, put)
	atomic.StoreUint64(q.jValidP, 0)
}

// copyIn and copyOut copy a payload into and out of the ring as
// cachecopy does: an item put is read soon by a process on the other
// CPU, and an item taken by its taker, both from the caches.
func (q *core) copyIn(pos, capa uint64, p []byte) {
	off := pos & (capa - 1)
	n := cachecopy.Copy(q.data[off:capa], p)
	if n < len(p) {
		cachecopy.Copy(q.data, p[n:])
	}
}

func (q *core) copyOut(pos, capa uint64, p []byte) {
	off := pos & (capa - 1)
	n := cachecopy.Copy(p, q.data[off:capa])
	if n < len(p) {
		cachecopy.Copy(p[n:], q.data)
	}
}

// cloneOut returns a copy of the n bytes at ring position pos in memory
// of its own, not cleared first (cachecopy.Clone): for a large item,
// clearing new memory (make) costs as much as the copy itself.
func (q *core) cloneOut(pos, capa uint64, n int) []byte {
	off := pos & (capa - 1)
	end := min(capa, off+uint64(n))
	return cachecopy.Clone(q.data[off:end], q.data[:n-int(end-off)])
}

// frame is one item taken off the ring: payloads of up to 16 bytes are
// held inline (no allocation), longer ones in big.
type frame struct {
	tag   uint8
	n     int
	small [16]byte
	big   []byte
}

var errCorrupt = errors.New("queue: corrupt frame in shared memory")

// get takes the oldest frame. block selects Get (wait for an item) or
// TryGet. A payload longer than f.small is copied into dst when it fits
// in dst's capacity (f.big is then dst[:n]), into new memory otherwise.
func (q *core) get(ctx context.Context, block bool, dst []byte) (f frame, err error) {
	if !q.enter() {
		return f, ErrClosed
	}
	defer q.mu.RUnlock()
	for {
		if q.empty() {
			if !block {
				return f, ErrEmpty
			}
			if !q.spin.Spin(func() bool { return !q.empty() || q.closed.Load() }) {
				if err := q.wait(ctx, q.notEmpty, func() bool { return !q.empty() }, q.p, time.Time{}); err != nil {
					return f, waitErr(ErrEmpty, err)
				}
			}
			continue
		}
		if err := q.lock(ctx, q.c, false); err != nil {
			return f, fmt.Errorf("%w: %w", ErrEmpty, err)
		}
		if q.closed.Load() {
			q.c.Release()
			return f, ErrClosed
		}
		ok, shrink, err := q.take(&f, dst)
		q.c.Release()
		if err != nil {
			return f, err
		}
		if !ok {
			continue
		}
		signal(q.notFull)
		if shrink {
			q.shrink()
		}
		return f, nil
	}
}

// empty reports whether no item is queued (a lock-free snapshot). The
// consumers' cached copy of putSeq answers first, so that a consumer
// behind the producers does not read the producers' line for every item.
func (q *core) empty() bool {
	g := atomic.LoadUint64(q.getSeq)
	return atomic.LoadUint64(q.cachedPut) == g && atomic.LoadUint64(q.putSeq) == g
}

// take reads the frame at head into f (into dst when it fits, see get)
// and commits, with the consumers' lock held. It reports false when the
// queue turned out empty.
func (q *core) take(f *frame, dst []byte) (ok, shrink bool, err error) {
	g := atomic.LoadUint64(q.getSeq)
	if atomic.LoadUint64(q.cachedPut) == g {
		p := atomic.LoadUint64(q.putSeq)
		if p == g {
			return false, false, nil
		}
		atomic.StoreUint64(q.cachedPut, p)
	}
	race.Sync(unsafe.Pointer(q.tail))
	h := atomic.LoadUint64(q.head)
	capa := atomic.LoadUint64(q.capacity)
	hdr := binary.LittleEndian.Uint64(q.data[h&(capa-1)&^7:])
	n, tag := int64(uint32(hdr)), uint8(hdr>>32)
	need := frameHdr + pad8(uint64(n))
	if n > q.maxItem || tag == 0 || tag > maxTag || h&7 != 0 || need > atomic.LoadUint64(q.tail)-h {
		return false, false, errCorrupt
	}
	f.tag, f.n, f.big = tag, int(n), nil
	if n <= int64(len(f.small)) {
		q.copyOut(h+frameHdr, capa, f.small[:n])
	} else if n <= int64(cap(dst)) {
		f.big = dst[:n]
		q.copyOut(h+frameHdr, capa, f.big)
	} else {
		f.big = q.cloneOut(h+frameHdr, capa, int(n))
	}
	crashPoint(crashTakeCopied)
	atomic.StoreUint64(q.jHead, h+need)
	atomic.StoreUint64(q.jGetSeq, g+1)
	atomic.StoreUint64(q.jValidC, 1)
	crashPoint(crashTakeJournaled)
	race.Sync(unsafe.Pointer(q.tail))
	atomic.StoreUint64(q.head, h+need)
	atomic.StoreUint64(q.getSeq, g+1)
	atomic.StoreUint64(q.jValidC, 0)
	shrink = capa > 4*q.minCap && atomic.LoadUint64(q.cachedPut) == g+1 && atomic.LoadUint64(q.putSeq) == g+1 &&
		time.Since(time.Unix(0, int64(atomic.LoadUint64(q.lastGrow)))) >= shrinkAfter
	return true, shrink, nil
}

// Waiting. Each futex word has bit 0 "someone may be asleep" and a
// sequence number above it. A waiter sets the bit, then re-checks its
// condition, then sleeps on the value with the bit set. A signaller
// changes its state first, then clears the bit (bumping the sequence) and
// wakes everyone if the bit was set. Whichever of the two comes second
// sees the other's change, so no wake-up is lost; a waiter that died
// leaves at most one needless wake-up behind (the bit is cleared by it).

// sleepers is the count of processes' goroutines inside FUTEX_WAIT on w,
// the word after it: a signaller that clears the bit skips the system
// call when nobody sleeps (a waiter that raised the bit and then found
// its condition true). A waiter counts itself before it sleeps, the
// signaller changes the word before it reads the count, so one of the
// two sees the other. A sleeper that dies leaves the count high, which
// only costs needless wake-ups.
func sleepers(w *uint32) *uint32 { return (*uint32)(unsafe.Add(unsafe.Pointer(w), 4)) }

// signal wakes the waiters of w, if any may sleep.
func signal(w *uint32) {
	for {
		v := atomic.LoadUint32(w)
		if v&1 == 0 {
			return
		}
		if atomic.CompareAndSwapUint32(w, v, v+1) {
			if atomic.LoadUint32(sleepers(w)) != 0 {
				futex.WakeAll(w)
			}
			return
		}
	}
}

// rescueEvery is how often a waiter checks that the other side's lock is
// not held by a dead process (see rescue).
const rescueEvery = 250 * time.Millisecond

// wait sleeps on w until cond holds, the handle is closed (ErrClosed),
// ctx ends (ctx's error) or, when until is not zero, until passes (nil:
// the caller re-checks its state). Every rescueEvery of sleep it runs
// rescue(other) (other may be nil): a consumer waiting for an item that a
// producer committed, then died before publishing, gets it then, and the
// same for producers waiting for room.
func (q *core) wait(ctx context.Context, w *uint32, cond func() bool, other *syncprim.Lock, until time.Time) error {
	var stop func() bool
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	var slept time.Time
	for {
		// Check before raising the bit too: a waiter woken for its
		// condition then leaves without making the next signaller wake
		// the futex for nothing.
		if q.closed.Load() {
			return ErrClosed
		}
		if cond() {
			return nil
		}
		v := atomic.LoadUint32(w)
		if v&1 == 0 {
			if !atomic.CompareAndSwapUint32(w, v, v|1) {
				continue
			}
			v |= 1
		}
		if q.closed.Load() {
			return ErrClosed
		}
		if cond() {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		timeout := time.Duration(-1)
		if dl, ok := ctx.Deadline(); ok {
			if timeout = time.Until(dl); timeout <= 0 {
				return context.DeadlineExceeded
			}
		}
		if !until.IsZero() {
			left := time.Until(until)
			if left <= 0 {
				return nil
			}
			if timeout < 0 || left < timeout {
				timeout = left
			}
		}
		if other != nil && (timeout < 0 || timeout > rescueEvery) {
			timeout = rescueEvery
			if !slept.IsZero() && time.Since(slept) >= rescueEvery {
				q.rescue(other)
				slept = time.Time{}
				continue
			}
			if slept.IsZero() {
				slept = time.Now()
			}
		}
		if stop == nil && ctx.Done() != nil {
			stop = context.AfterFunc(ctx, func() {
				// This may run after the wait returned: hold the handle
				// open (or find it closed) while touching its memory.
				if !q.enter() {
					return
				}
				defer q.mu.RUnlock()
				atomic.AddUint32(w, 2)
				futex.WakeAll(w)
			})
			continue
		}
		atomic.AddUint32(sleepers(w), 1)
		err := futex.Wait(w, v, timeout)
		if err == futex.ErrTimeout {
			err = nil // a sliced wait: the caller re-reads its state
		}
		atomic.AddUint32(sleepers(w), ^uint32(0))
		if err != nil {
			return fmt.Errorf("queue: futex wait: %w", err)
		}
	}
}

// rescue repairs the other side's commit when its lock is held by a dead
// process. TryAcquire looks at the holder's liveness (/proc) only when the
// lock is held, and this runs only after long waits.
func (q *core) rescue(l *syncprim.Lock) {
	ok, err := l.TryAcquire()
	if !ok {
		return
	}
	if err == syncprim.ErrOwnerDead {
		if l == q.p {
			q.repairP()
		} else {
			q.repairC()
		}
	}
	l.Release()
}

// waitErr is the error of a Put or Get whose wait ended: ErrClosed as it
// is, a context's end as ErrFull or ErrEmpty wrapping the context's error.
func waitErr(sentinel, err error) error {
	if err == ErrClosed || !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}
