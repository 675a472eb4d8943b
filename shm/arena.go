// SPDX-License-Identifier: Apache-2.0

package shm

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// An Arena is one anonymous segment carved into many small Blocks, so that
// thousands of shared objects (syncprim's futex words, small Values) need
// one fd and one mapping instead of one each.
//
// The allocator lives in the creating process: Alloc and Free are
// methods of the Arena, which exists only there, and its bookkeeping is
// ordinary Go memory guarded by a mutex. Blocks handed to other processes
// (MultiprocHandle/MultiprocAttach) point into the same memory but cannot
// allocate or free; a child that needs objects of its own makes its own
// Arena. All methods are safe for concurrent use by goroutines.
//
// Free returns a block's space to the arena, where later Allocs may reuse
// it (first fit, adjacent free ranges merged). The memory stays mapped in
// this process until the Arena is closed and every Block allocated from it
// is freed; in another process, until every Block attached there is
// closed.
type Arena struct {
	m      *mapping
	mu     sync.Mutex
	free   []extent    // sorted by offset, never adjacent
	used   map[int]int // offset -> reserved length, for blocks not yet freed
	closed bool
}

type extent struct{ off, size int }

// mapping is one segment mapped in this process, shared by the Arena and
// all Blocks that point into it, keyed by the file's (dev, inode) so that
// a process maps an arena once however many of its Blocks it receives.
type mapping struct {
	seg  *Segment
	key  fileKey
	refs int // guarded by mappings.mu
}

var mappings = struct {
	sync.Mutex
	m map[fileKey]*mapping
}{m: map[fileKey]*mapping{}}

func (m *mapping) release() {
	mappings.Lock()
	m.refs--
	last := m.refs == 0
	if last {
		delete(mappings.m, m.key)
	}
	mappings.Unlock()
	if last {
		m.seg.Close()
	}
}

// pageSize is the size arenas are rounded up to.
var pageSize = os.Getpagesize()

// NewArena creates an arena of at least size bytes (rounded up to whole
// pages) in a new anonymous segment.
func NewArena(size int) (*Arena, error) {
	if size <= 0 {
		return nil, fmt.Errorf("%w: arena of %d bytes", ErrInvalidSize, size)
	}
	size = (size + pageSize - 1) / pageSize * pageSize
	seg, err := New(size)
	if err != nil {
		return nil, err
	}
	key, _, err := sysFileID(seg.fd)
	if err != nil {
		seg.Close()
		return nil, fmt.Errorf("shm: arena: fstat: %w", err)
	}
	m := &mapping{seg: seg, key: key, refs: 1}
	mappings.Lock()
	mappings.m[key] = m
	mappings.Unlock()
	return &Arena{m: m, free: []extent{{0, size}}, used: map[int]int{}}, nil
}

// Segment returns the arena's segment. It belongs to the arena: do not
// Close it.
func (a *Arena) Segment() *Segment { return a.m.seg }

// Close releases the arena: later Allocs return ErrClosed. Blocks already
// allocated stay valid until freed; the memory is unmapped when the last
// of them is. Close is idempotent.
func (a *Arena) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	a.m.release()
	return nil
}

// Available returns the number of free bytes (possibly fragmented).
func (a *Arena) Available() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, e := range a.free {
		n += e.size
	}
	return n
}

// Alloc returns a zeroed block of size bytes whose offset (and so address:
// the segment is page-aligned) is a multiple of align, a power of two no
// larger than the page size; align 0 means 8. It returns ErrArenaFull when
// no free range fits. Alloc is safe for concurrent use.
func (a *Arena) Alloc(size, align int) (*Block, error) {
	if size <= 0 {
		return nil, fmt.Errorf("%w: block of %d bytes", ErrInvalidSize, size)
	}
	if align == 0 {
		align = 8
	}
	if align < 0 || align&(align-1) != 0 || align > pageSize {
		return nil, fmt.Errorf("shm: alignment %d is not a power of two up to %d", align, pageSize)
	}
	// Reserve multiples of 8 so that free ranges stay 8-aligned.
	rsize := (size + 7) &^ 7
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, ErrClosed
	}
	off := -1
	for i, e := range a.free {
		start := (e.off + align - 1) &^ (align - 1)
		if start+rsize > e.off+e.size {
			continue
		}
		off = start
		var rest []extent
		if start > e.off {
			rest = append(rest, extent{e.off, start - e.off})
		}
		if end := e.off + e.size; start+rsize < end {
			rest = append(rest, extent{start + rsize, end - start - rsize})
		}
		a.free = slices.Replace(a.free, i, i+1, rest...)
		break
	}
	if off < 0 {
		a.mu.Unlock()
		return nil, fmt.Errorf("%w: no free range of %d bytes aligned to %d", ErrArenaFull, size, align)
	}
	a.used[off] = rsize
	mappings.Lock()
	a.m.refs++
	mappings.Unlock()
	a.mu.Unlock()
	mem := a.m.seg.mem[off : off+size : off+size]
	clear(mem)
	return &Block{m: a.m, arena: a, mem: mem, off: off}, nil
}

// Free returns b's space to the arena, where a later Alloc may reuse it.
// b (and anything that points into it) must not be used afterwards. Only
// blocks allocated from a (not attached ones) can be freed; a second Free
// is an error. Free also works after Close.
func (a *Arena) Free(b *Block) error {
	if b == nil || b.arena != a {
		return fmt.Errorf("shm: free of a block that does not belong to this arena")
	}
	if !b.released.CompareAndSwap(false, true) {
		return fmt.Errorf("shm: block at offset %d freed twice: %w", b.off, ErrClosed)
	}
	a.mu.Lock()
	rsize, ok := a.used[b.off]
	if !ok {
		a.mu.Unlock()
		return fmt.Errorf("shm: block at offset %d is not allocated", b.off)
	}
	delete(a.used, b.off)
	e := extent{b.off, rsize}
	i, _ := slices.BinarySearchFunc(a.free, e.off, func(x extent, off int) int { return x.off - off })
	// Merge with the free neighbours.
	if i < len(a.free) && e.off+e.size == a.free[i].off {
		e.size += a.free[i].size
		a.free = slices.Delete(a.free, i, i+1)
	}
	if i > 0 && a.free[i-1].off+a.free[i-1].size == e.off {
		a.free[i-1].size += e.size
	} else {
		a.free = slices.Insert(a.free, i, e)
	}
	a.mu.Unlock()
	a.m.release()
	return nil
}

// A Block is a range of an Arena's memory: allocated by Arena.Alloc in
// the creating process, or rebuilt by MultiprocAttach in another process,
// where it points into that process's single mapping of the arena.
//
// Bytes, Pointer, Offset and Size are safe for concurrent use; the
// block's contents are not synchronised. A Block must not be used after
// it is freed or closed.
type Block struct {
	m        *mapping
	arena    *Arena // nil for an attached block
	mem      []byte
	off      int
	released atomic.Bool
}

// Bytes returns the block's memory (nil once it is freed or closed).
func (b *Block) Bytes() []byte {
	if b.released.Load() {
		return nil
	}
	return b.mem
}

// Pointer returns the address of the block's first byte.
func (b *Block) Pointer() unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b.mem)) }

// Offset returns the block's offset in the arena's segment.
func (b *Block) Offset() int { return b.off }

// Size returns the block's size in bytes as requested from Alloc.
func (b *Block) Size() int { return len(b.mem) }

// Close releases the block: for a block from Alloc it is Arena.Free; for
// an attached block it drops this process's reference to the arena's
// mapping, which is unmapped with the last one. Close is idempotent.
func (b *Block) Close() error {
	if b.arena != nil {
		if b.released.Load() {
			return nil
		}
		return b.arena.Free(b)
	}
	if b.m == nil || !b.released.CompareAndSwap(false, true) {
		return nil
	}
	b.m.release()
	return nil
}

// Block handle descriptor: version 1, offset, size (little-endian uint64).
const blockHandleV1 = 1

// MultiprocHandle describes the block so that another process can rebuild
// it with MultiprocAttach: a duplicate of the arena's fd (the caller owns
// and closes it) and the block's offset and size.
func (b *Block) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	if b.m == nil || b.released.Load() {
		return nil, nil, ErrClosed
	}
	f, err := b.m.seg.dupFile()
	if err != nil {
		return nil, nil, err
	}
	desc = appendU64(appendU64([]byte{blockHandleV1}, uint64(b.off)), uint64(len(b.mem)))
	return []*os.File{f}, desc, nil
}

// MultiprocAttach makes the zero Block b the block that MultiprocHandle
// described in another process. It takes ownership of files. The arena's
// memory is mapped once per process: blocks of the same arena (same
// memfd, by device and inode) share one mapping and one fd, and the extra
// fds are closed at once. Close the block when done with it.
func (b *Block) MultiprocAttach(files []*os.File, desc []byte) error {
	if len(files) != 1 || len(desc) != 17 || desc[0] != blockHandleV1 {
		closeFiles(files)
		return fmt.Errorf("%w: block handle with %d files and %d descriptor bytes", ErrBadHandle, len(files), len(desc))
	}
	if b.m != nil {
		closeFiles(files)
		return fmt.Errorf("%w: MultiprocAttach on a block in use", ErrBadHandle)
	}
	uoff, rest, _ := readU64(desc[1:])
	usize, _, _ := readU64(rest)
	m, err := attachMapping(files[0])
	if err != nil {
		return err
	}
	if usize == 0 || uoff > uint64(m.seg.size) || usize > uint64(m.seg.size)-uoff {
		m.release()
		return fmt.Errorf("%w: block [%d, +%d) outside a segment of %d bytes", ErrBadHandle, uoff, usize, m.seg.size)
	}
	off, size := int(uoff), int(usize)
	b.m, b.off, b.mem = m, off, m.seg.mem[off:off+size:off+size]
	return nil
}

// attachMapping returns this process's mapping of the file f (taking
// ownership of f), mapping it if it is not mapped yet, with one more
// reference.
func attachMapping(f *os.File) (*mapping, error) {
	key, _, err := sysFileID(int(f.Fd()))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("shm: attach: fstat: %w", err)
	}
	mappings.Lock()
	defer mappings.Unlock()
	if m, ok := mappings.m[key]; ok {
		f.Close()
		m.refs++
		return m, nil
	}
	seg, err := segmentFromFile(f, "")
	if err != nil {
		return nil, err
	}
	m := &mapping{seg: seg, key: key, refs: 1}
	mappings.m[key] = m
	return m, nil
}
