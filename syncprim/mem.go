// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/multiproc/multiproc/shm"
)

// Each primitive starts with a magic word naming its kind and layout
// version, checked when it is attached or opened.
const magicBase = 0x53500100 // "SP", layout version 1, kind in the low byte

type kind uint8

const (
	kindLock kind = iota + 1
	kindRLock
	kindSemaphore
	kindEvent
	kindCondition
	kindBarrier
	kindOwnedSemaphore
)

func (k kind) magic() uint32 { return magicBase | uint32(k) }

func (k kind) String() string {
	switch k {
	case kindLock:
		return "Lock"
	case kindRLock:
		return "RLock"
	case kindSemaphore:
		return "Semaphore"
	case kindEvent:
		return "Event"
	case kindCondition:
		return "Condition"
	case kindBarrier:
		return "Barrier"
	case kindOwnedSemaphore:
		return "OwnedSemaphore"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// align is the alignment (and granularity) of every primitive: a cache
// line, so that two primitives never share one.
const align = 64

func roundUp(n int) int { return (n + align - 1) &^ (align - 1) }

// An Option places a new primitive (at most one of InArena, InBlock and
// InSegment; by default it goes to the package's arena) or sets a property
// of it (MaxWaiters, Action, Timeout). Options that do not apply to
// a primitive are ignored.
type Option func(*options)

type options struct {
	arena      *shm.Arena
	block      *shm.Block
	seg        *shm.Segment
	segOff     int
	maxWaiters int
	action     func() error
	actionName string
	timeout    time.Duration
}

// InArena allocates the primitive from a (instead of the package's default
// arena). Close frees it back to a.
func InArena(a *shm.Arena) Option { return func(o *options) { o.arena = a } }

// InBlock places the primitive at the start of b, which must be at least
// the primitive's size (LockSize, ...) and 8-byte aligned. The block stays
// the caller's: Close does not free it.
func InBlock(b *shm.Block) Option { return func(o *options) { o.block = b } }

// InSegment places the primitive in seg at offset (a multiple of 8), for
// example in a named segment that unrelated processes open and then reach
// the primitive with OpenLock (OpenSemaphore, ...) at the same offset. The
// segment stays the caller's: Close does not close it.
func InSegment(seg *shm.Segment, offset int) Option {
	return func(o *options) { o.seg, o.segOff = seg, offset }
}

// region is the shared memory holding one primitive and what this process
// must do to hand it over and to let it go.
type region struct {
	p     unsafe.Pointer
	size  int
	block *shm.Block   // the block holding it, if any
	seg   *shm.Segment // or the segment holding it, at off
	off   int
	own   bool // Close releases block or seg
}

// defaultArenas is the package's lazily created arena set: when the
// newest is full another, twice as large, is added. The arenas live as
// long as the process (they are memfds: the kernel frees them when the
// last process using them exits).
var defaultArenas struct {
	sync.Mutex
	list []*shm.Arena
	next int
}

func allocDefault(size int) (*shm.Block, error) {
	defaultArenas.Lock()
	defer defaultArenas.Unlock()
	for i := len(defaultArenas.list) - 1; i >= 0; i-- {
		b, err := defaultArenas.list[i].Alloc(size, align)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, shm.ErrArenaFull) {
			return nil, fmt.Errorf("syncprim: %w", err)
		}
	}
	n := max(defaultArenas.next, 64<<10, 2*size)
	a, err := shm.NewArena(n)
	if err != nil {
		return nil, fmt.Errorf("syncprim: %w", err)
	}
	defaultArenas.list = append(defaultArenas.list, a)
	defaultArenas.next = 2 * n
	b, err := a.Alloc(size, align)
	if err != nil {
		return nil, fmt.Errorf("syncprim: %w", err)
	}
	return b, nil
}

// newRegion finds size bytes for a new primitive as the options say and
// zeroes them.
func newRegion(size int, o *options) (*region, error) {
	n := 0
	for _, set := range []bool{o.block != nil, o.seg != nil, o.arena != nil} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("syncprim: more than one of InArena, InBlock and InSegment")
	}
	var r *region
	switch {
	case o.block != nil:
		mem := o.block.Bytes()
		if mem == nil {
			return nil, fmt.Errorf("syncprim: block: %w", shm.ErrClosed)
		}
		if len(mem) < size {
			return nil, fmt.Errorf("syncprim: block of %d bytes cannot hold %d", len(mem), size)
		}
		r = &region{p: o.block.Pointer(), size: size, block: o.block}
	case o.seg != nil:
		mem := o.seg.Bytes()
		if mem == nil {
			return nil, fmt.Errorf("syncprim: segment: %w", shm.ErrClosed)
		}
		if o.segOff < 0 || o.segOff > len(mem)-size {
			return nil, fmt.Errorf("syncprim: offset %d: %d bytes do not fit in a segment of %d", o.segOff, size, len(mem))
		}
		r = &region{p: unsafe.Pointer(&mem[o.segOff]), size: size, seg: o.seg, off: o.segOff}
	case o.arena != nil:
		b, err := o.arena.Alloc(size, align)
		if err != nil {
			return nil, fmt.Errorf("syncprim: %w", err)
		}
		r = &region{p: b.Pointer(), size: size, block: b, own: true}
	default:
		b, err := allocDefault(size)
		if err != nil {
			return nil, err
		}
		r = &region{p: b.Pointer(), size: size, block: b, own: true}
	}
	if uintptr(r.p)%8 != 0 {
		r.close()
		return nil, fmt.Errorf("syncprim: shared memory at %p is not 8-byte aligned", r.p)
	}
	clear(unsafe.Slice((*byte)(r.p), size))
	return r, nil
}

// openRegion reaches an existing primitive of kind k in seg at off.
func openRegion(seg *shm.Segment, off, size int, k kind) (*region, error) {
	mem := seg.Bytes()
	if mem == nil {
		return nil, fmt.Errorf("syncprim: segment: %w", shm.ErrClosed)
	}
	if off < 0 || off > len(mem)-size || off%8 != 0 {
		return nil, fmt.Errorf("%w: %s at offset %d in a segment of %d bytes", ErrBadHandle, k, off, len(mem))
	}
	r := &region{p: unsafe.Pointer(&mem[off]), size: size, seg: seg, off: off}
	if err := r.check(k); err != nil {
		return nil, err
	}
	return r, nil
}

// check verifies that the region holds an initialised primitive of kind k.
func (r *region) check(k kind) error {
	if got := atomic.LoadUint32((*uint32)(r.p)); got != k.magic() {
		return fmt.Errorf("%w: memory does not hold a %s (magic %#x)", ErrBadHandle, k, got)
	}
	return nil
}

// publish stores the magic word last, once the primitive is initialised.
func (r *region) publish(k kind) { atomic.StoreUint32((*uint32)(r.p), k.magic()) }

func (r *region) close() error {
	if !r.own {
		return nil
	}
	r.own = false
	if r.block != nil {
		return r.block.Close()
	}
	return r.seg.Close()
}

// Handle descriptor: version, kind, where (block or segment), the
// region's size, the segment offset, then the block's or segment's own
// descriptor.
const (
	handleV1  = 1
	whereBlk  = 1
	whereSeg  = 2
	hdrLength = 1 + 1 + 1 + 8 + 8
)

func (r *region) handle(k kind) ([]*os.File, []byte, error) {
	var (
		files []*os.File
		inner []byte
		err   error
		where byte
	)
	if r.block != nil {
		where = whereBlk
		files, inner, err = r.block.MultiprocHandle()
	} else {
		where = whereSeg
		files, inner, err = r.seg.MultiprocHandle()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("syncprim: %s handle: %w", k, err)
	}
	desc := []byte{handleV1, byte(k), where}
	desc = binary.LittleEndian.AppendUint64(desc, uint64(r.size))
	desc = binary.LittleEndian.AppendUint64(desc, uint64(r.off))
	return files, append(desc, inner...), nil
}

// attachRegion rebuilds a region from handle(k). It takes ownership of
// files, and the region owns what it attached.
func attachRegion(files []*os.File, desc []byte, k kind) (*region, error) {
	if len(desc) < hdrLength || desc[0] != handleV1 || kind(desc[1]) != k {
		closeFiles(files)
		return nil, fmt.Errorf("%w: not a %s handle", ErrBadHandle, k)
	}
	size := int(binary.LittleEndian.Uint64(desc[3:]))
	off := int(binary.LittleEndian.Uint64(desc[11:]))
	inner := desc[hdrLength:]
	var r *region
	switch desc[2] {
	case whereBlk:
		b := new(shm.Block)
		if err := b.MultiprocAttach(files, inner); err != nil {
			return nil, fmt.Errorf("syncprim: %s handle: %w", k, err)
		}
		if b.Size() < size {
			b.Close()
			return nil, fmt.Errorf("%w: block of %d bytes for a %s of %d", ErrBadHandle, b.Size(), k, size)
		}
		r = &region{p: b.Pointer(), size: size, block: b, own: true}
	case whereSeg:
		s := new(shm.Segment)
		if err := s.MultiprocAttach(files, inner); err != nil {
			return nil, fmt.Errorf("syncprim: %s handle: %w", k, err)
		}
		mem := s.Bytes()
		if off < 0 || off%8 != 0 || off > len(mem)-size {
			s.Close()
			return nil, fmt.Errorf("%w: %s at offset %d in a segment of %d bytes", ErrBadHandle, k, off, len(mem))
		}
		r = &region{p: unsafe.Pointer(&mem[off]), size: size, seg: s, off: off, own: true}
	default:
		closeFiles(files)
		return nil, fmt.Errorf("%w: %s handle of unknown placement %d", ErrBadHandle, k, desc[2])
	}
	if err := r.check(k); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}
