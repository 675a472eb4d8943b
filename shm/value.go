// SPDX-License-Identifier: Apache-2.0

package shm

import (
	"fmt"
	"math"
	"os"
	"reflect"
	"sync/atomic"
	"unsafe"

	"github.com/multiproc/multiproc/internal/base/valenc"
)

// checkType reports whether values of type t can live in shared memory:
// plain data (fixed size, no pointers anywhere inside), by multiproc's one
// rule (internal/base/valenc.PlainCheck).
func checkType(root reflect.Type) error {
	if path, kind, ok := valenc.PlainCheck(root); !ok {
		return &TypeError{Type: root, Path: path, Kind: kind}
	}
	return nil
}

// atomicWidth returns 4 or 8 for the integer kinds that sync/atomic
// handles, 0 otherwise.
func atomicWidth(t reflect.Type) int {
	switch t.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return int(t.Size())
	}
	return 0
}

// store is where a Value or Array lives: its own segment, or an arena
// block (allocated here, or attached).
type store struct {
	seg *Segment
	blk *Block
}

func (s *store) close() error {
	if s.blk != nil {
		return s.blk.Close()
	}
	if s.seg != nil {
		return s.seg.Close()
	}
	return nil
}

// Handle descriptor of a Value or Array: version, kind (1 segment, 2
// block), the element size and count, then the inner descriptor.
const (
	objHandleV1 = 1
	objInSeg    = 1
	objInBlock  = 2
)

func (s *store) handle(elemSize, n int) ([]*os.File, []byte, error) {
	var (
		files []*os.File
		inner []byte
		err   error
		kind  byte = objInSeg
	)
	if s.blk != nil {
		kind = objInBlock
		files, inner, err = s.blk.MultiprocHandle()
	} else {
		files, inner, err = s.seg.MultiprocHandle()
	}
	if err != nil {
		return nil, nil, err
	}
	desc := appendU64(appendU64([]byte{objHandleV1, kind}, uint64(elemSize)), uint64(n))
	return files, append(desc, inner...), nil
}

// attach rebuilds the store from a handle; fixed is the element count for
// a Value (1), or 0 for an Array, whose count comes from the descriptor.
// It returns the memory and the element count.
func (s *store) attach(files []*os.File, desc []byte, elemSize, fixed int) (unsafe.Pointer, int, error) {
	if len(desc) < 18 || desc[0] != objHandleV1 {
		closeFiles(files)
		return nil, 0, fmt.Errorf("%w: value handle of %d bytes", ErrBadHandle, len(desc))
	}
	kind := desc[1]
	es, rest, _ := readU64(desc[2:])
	un, rest, _ := readU64(rest)
	if es != uint64(elemSize) || un == 0 || un > 1<<40 || (fixed != 0 && un != uint64(fixed)) {
		closeFiles(files)
		return nil, 0, fmt.Errorf("%w: handle for %d elements of %d bytes, want elements of %d bytes", ErrBadHandle, un, es, elemSize)
	}
	n := int(un)
	need := n * elemSize
	var mem []byte
	switch kind {
	case objInSeg:
		seg := new(Segment)
		if err := seg.MultiprocAttach(files, rest); err != nil {
			return nil, 0, err
		}
		s.seg, mem = seg, seg.mem
	case objInBlock:
		blk := new(Block)
		if err := blk.MultiprocAttach(files, rest); err != nil {
			return nil, 0, err
		}
		s.blk, mem = blk, blk.mem
	default:
		closeFiles(files)
		return nil, 0, fmt.Errorf("%w: value handle kind %d", ErrBadHandle, kind)
	}
	if len(mem) < need {
		s.close()
		return nil, 0, fmt.Errorf("%w: %d bytes shared, %d needed", ErrInvalidSize, len(mem), need)
	}
	p := unsafe.Pointer(unsafe.SliceData(mem))
	if uintptr(p)%8 != 0 {
		s.close()
		return nil, 0, fmt.Errorf("%w: misaligned shared value", ErrBadHandle)
	}
	return p, n, nil
}

// typeInfo validates T and returns its size and atomic width.
func typeInfo[T any]() (size, width int, err error) {
	t := reflect.TypeFor[T]()
	if err := checkType(t); err != nil {
		return 0, 0, err
	}
	if t.Size() == 0 {
		return 0, 0, fmt.Errorf("%w: type %v has size 0", ErrInvalidSize, t)
	}
	return int(t.Size()), atomicWidth(t), nil
}

// Value is one T in shared memory. T must be fixed-size and pointer-free
// (checked at construction). See the package documentation for which
// methods are atomic. Close releases this process's hold on the memory;
// the Value must not be used afterwards.
type Value[T any] struct {
	p     *T
	width int // 4 or 8 when T is an atomic integer, else 0
	st    store
}

func newValue[T any](mk func(size int) (store, []byte, error), init T) (*Value[T], error) {
	size, width, err := typeInfo[T]()
	if err != nil {
		return nil, err
	}
	st, mem, err := mk(size)
	if err != nil {
		return nil, err
	}
	v := &Value[T]{p: (*T)(unsafe.Pointer(unsafe.SliceData(mem))), width: width, st: st}
	*v.p = init
	return v, nil
}

func segStore(size int) (store, []byte, error) {
	seg, err := New(size)
	if err != nil {
		return store{}, nil, err
	}
	return store{seg: seg}, seg.mem, nil
}

func namedStore(name string, opts []Option) func(int) (store, []byte, error) {
	return func(size int) (store, []byte, error) {
		seg, err := Create(name, size, opts...)
		if err != nil {
			return store{}, nil, err
		}
		return store{seg: seg}, seg.mem, nil
	}
}

func arenaStore(a *Arena, align int) func(int) (store, []byte, error) {
	return func(size int) (store, []byte, error) {
		b, err := a.Alloc(size, max(align, 8))
		if err != nil {
			return store{}, nil, err
		}
		return store{blk: b}, b.mem, nil
	}
}

// NewValue returns a Value holding init in a new anonymous segment.
func NewValue[T any](init T) (*Value[T], error) { return newValue(segStore, init) }

// CreateValue returns a Value holding init in a new named segment (see
// Create for name and opts); Segment().Unlink() removes it.
func CreateValue[T any](name string, init T, opts ...Option) (*Value[T], error) {
	return newValue(namedStore(name, opts), init)
}

// AllocValue returns a Value holding init in a block of a (the cheap way
// to have many). Close frees the block.
func AllocValue[T any](a *Arena, init T) (*Value[T], error) {
	return newValue(arenaStore(a, int(reflect.TypeFor[T]().Align())), init)
}

// OpenValue attaches to a Value that CreateValue made under name. The
// segment must be at least as large as T.
func OpenValue[T any](name string) (*Value[T], error) {
	size, width, err := typeInfo[T]()
	if err != nil {
		return nil, err
	}
	seg, err := Open(name)
	if err != nil {
		return nil, err
	}
	if seg.size < size {
		seg.Close()
		return nil, fmt.Errorf("%w: segment %q has %d bytes, %v needs %d", ErrInvalidSize, seg.name, seg.size, reflect.TypeFor[T](), size)
	}
	return &Value[T]{p: (*T)(unsafe.Pointer(unsafe.SliceData(seg.mem))), width: width, st: store{seg: seg}}, nil
}

// Pointer returns the shared T itself, for reading and writing fields in
// place. Accesses through it are not synchronised.
func (v *Value[T]) Pointer() *T { return v.p }

// Atomic reports whether Load, Store, Swap, Add and CompareAndSwap are
// atomic, i.e. T is a 4- or 8-byte integer type.
func (v *Value[T]) Atomic() bool { return v.width != 0 }

// Load returns the value: atomically for integer types, otherwise as a
// plain copy that a concurrent Store may tear.
func (v *Value[T]) Load() T {
	switch v.width {
	case 4:
		x := atomic.LoadUint32((*uint32)(unsafe.Pointer(v.p)))
		return *(*T)(unsafe.Pointer(&x))
	case 8:
		x := atomic.LoadUint64((*uint64)(unsafe.Pointer(v.p)))
		return *(*T)(unsafe.Pointer(&x))
	}
	return *v.p
}

// Store sets the value: atomically for integer types, otherwise as a
// plain copy.
func (v *Value[T]) Store(x T) {
	switch v.width {
	case 4:
		atomic.StoreUint32((*uint32)(unsafe.Pointer(v.p)), *(*uint32)(unsafe.Pointer(&x)))
	case 8:
		atomic.StoreUint64((*uint64)(unsafe.Pointer(v.p)), *(*uint64)(unsafe.Pointer(&x)))
	default:
		*v.p = x
	}
}

// Get is Load, named after CPython's Value.value.
func (v *Value[T]) Get() T { return v.Load() }

// Set is Store.
func (v *Value[T]) Set(x T) { v.Store(x) }

func (v *Value[T]) mustAtomic(op string) {
	if v.width == 0 {
		panic(fmt.Sprintf("shm: Value[%v].%s: not an atomic integer type", reflect.TypeFor[T](), op))
	}
}

// Add atomically adds delta (wrapping around) and returns the new value.
// It panics unless T is a 4- or 8-byte integer type (see Atomic).
func (v *Value[T]) Add(delta T) T {
	v.mustAtomic("Add")
	if v.width == 4 {
		x := atomic.AddUint32((*uint32)(unsafe.Pointer(v.p)), *(*uint32)(unsafe.Pointer(&delta)))
		return *(*T)(unsafe.Pointer(&x))
	}
	x := atomic.AddUint64((*uint64)(unsafe.Pointer(v.p)), *(*uint64)(unsafe.Pointer(&delta)))
	return *(*T)(unsafe.Pointer(&x))
}

// Swap atomically stores x and returns the previous value. It panics
// unless T is a 4- or 8-byte integer type.
func (v *Value[T]) Swap(x T) T {
	v.mustAtomic("Swap")
	if v.width == 4 {
		o := atomic.SwapUint32((*uint32)(unsafe.Pointer(v.p)), *(*uint32)(unsafe.Pointer(&x)))
		return *(*T)(unsafe.Pointer(&o))
	}
	o := atomic.SwapUint64((*uint64)(unsafe.Pointer(v.p)), *(*uint64)(unsafe.Pointer(&x)))
	return *(*T)(unsafe.Pointer(&o))
}

// CompareAndSwap atomically replaces old by new and reports whether it
// did. It panics unless T is a 4- or 8-byte integer type.
func (v *Value[T]) CompareAndSwap(old, new T) bool {
	v.mustAtomic("CompareAndSwap")
	if v.width == 4 {
		return atomic.CompareAndSwapUint32((*uint32)(unsafe.Pointer(v.p)), *(*uint32)(unsafe.Pointer(&old)), *(*uint32)(unsafe.Pointer(&new)))
	}
	return atomic.CompareAndSwapUint64((*uint64)(unsafe.Pointer(v.p)), *(*uint64)(unsafe.Pointer(&old)), *(*uint64)(unsafe.Pointer(&new)))
}

// Segment returns the Value's own segment, or nil when it lives in an
// arena block.
func (v *Value[T]) Segment() *Segment { return v.st.seg }

// Close releases the Value in this process: it closes its segment, or
// frees (attached: closes) its arena block. The shared memory itself goes
// when the last process lets go (a named segment: at Unlink).
func (v *Value[T]) Close() error { return v.st.close() }

// MultiprocHandle describes the Value so that a child process can rebuild
// it with MultiprocAttach; it shares the same memory.
func (v *Value[T]) MultiprocHandle() ([]*os.File, []byte, error) {
	size, _, _ := typeInfo[T]()
	return v.st.handle(size, 1)
}

// MultiprocAttach makes the zero Value v the Value that MultiprocHandle
// described in another process. It takes ownership of files.
func (v *Value[T]) MultiprocAttach(files []*os.File, desc []byte) error {
	size, width, err := typeInfo[T]()
	if err != nil {
		closeFiles(files)
		return err
	}
	if v.p != nil {
		closeFiles(files)
		return fmt.Errorf("%w: MultiprocAttach on a Value in use", ErrBadHandle)
	}
	p, _, err := v.st.attach(files, desc, size, 1)
	if err != nil {
		return err
	}
	v.p, v.width = (*T)(p), width
	return nil
}

// Array is a fixed number of T in shared memory, zero-filled at creation
// (CPython's RawArray). T must be fixed-size and pointer-free. Accesses
// are plain memory accesses and not synchronised: guard concurrent writers
// with a lock. Close releases this process's hold on the memory; the
// Array must not be used afterwards.
type Array[T any] struct {
	p  unsafe.Pointer
	n  int
	st store
}

func newArray[T any](mk func(size int) (store, []byte, error), n int) (*Array[T], error) {
	size, _, err := typeInfo[T]()
	if err != nil {
		return nil, err
	}
	if n <= 0 || n > math.MaxInt/size { // size*n fits an int, on 32-bit systems too
		return nil, fmt.Errorf("%w: array of %d elements", ErrInvalidSize, n)
	}
	st, mem, err := mk(size * n)
	if err != nil {
		return nil, err
	}
	return &Array[T]{p: unsafe.Pointer(unsafe.SliceData(mem)), n: n, st: st}, nil
}

// NewArray returns a zeroed Array of n elements in a new anonymous
// segment.
func NewArray[T any](n int) (*Array[T], error) { return newArray[T](segStore, n) }

// CreateArray returns a zeroed Array of n elements in a new named segment
// (see Create for name and opts).
func CreateArray[T any](name string, n int, opts ...Option) (*Array[T], error) {
	return newArray[T](namedStore(name, opts), n)
}

// AllocArray returns a zeroed Array of n elements in a block of a. Close
// frees the block.
func AllocArray[T any](a *Arena, n int) (*Array[T], error) {
	return newArray[T](arenaStore(a, int(reflect.TypeFor[T]().Align())), n)
}

// OpenArray attaches to an Array that CreateArray made under name; its
// length is the segment's size divided by the size of T.
func OpenArray[T any](name string) (*Array[T], error) {
	size, _, err := typeInfo[T]()
	if err != nil {
		return nil, err
	}
	seg, err := Open(name)
	if err != nil {
		return nil, err
	}
	if seg.size < size {
		seg.Close()
		return nil, fmt.Errorf("%w: segment %q has %d bytes, %v needs %d", ErrInvalidSize, seg.name, seg.size, reflect.TypeFor[T](), size)
	}
	return &Array[T]{p: unsafe.Pointer(unsafe.SliceData(seg.mem)), n: seg.size / size, st: store{seg: seg}}, nil
}

// Len returns the number of elements.
func (a *Array[T]) Len() int { return a.n }

// Slice returns the shared elements as a slice (no copy): writes through
// it are seen by every process. It must not be used after Close.
func (a *Array[T]) Slice() []T { return unsafe.Slice((*T)(a.p), a.n) }

// At returns element i; it panics if i is out of range, as indexing does.
func (a *Array[T]) At(i int) T { return a.Slice()[i] }

// Set sets element i; it panics if i is out of range.
func (a *Array[T]) Set(i int, x T) { a.Slice()[i] = x }

// Segment returns the Array's own segment, or nil when it lives in an
// arena block.
func (a *Array[T]) Segment() *Segment { return a.st.seg }

// Close releases the Array in this process (see Value.Close).
func (a *Array[T]) Close() error { return a.st.close() }

// MultiprocHandle describes the Array so that a child process can rebuild
// it with MultiprocAttach; it shares the same memory.
func (a *Array[T]) MultiprocHandle() ([]*os.File, []byte, error) {
	size, _, _ := typeInfo[T]()
	return a.st.handle(size, a.n)
}

// MultiprocAttach makes the zero Array a the Array that MultiprocHandle
// described in another process. It takes ownership of files.
func (a *Array[T]) MultiprocAttach(files []*os.File, desc []byte) error {
	size, _, err := typeInfo[T]()
	if err != nil {
		closeFiles(files)
		return err
	}
	if a.p != nil {
		closeFiles(files)
		return fmt.Errorf("%w: MultiprocAttach on an Array in use", ErrBadHandle)
	}
	p, n, err := a.st.attach(files, desc, size, 0)
	if err != nil {
		return err
	}
	a.p, a.n = p, n
	return nil
}
