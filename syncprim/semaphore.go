// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/multiproc/multiproc/internal/base/race"
	"github.com/multiproc/multiproc/internal/base/spin"
	"github.com/multiproc/multiproc/shm"
)

// MaxSemaphoreValue is the largest value a Semaphore can reach (POSIX's
// SEM_VALUE_MAX on Linux, as for CPython).
const MaxSemaphoreValue = 1<<31 - 1

// semMem is the shared layout of a Semaphore: 20 bytes.
type semMem struct {
	magic uint32
	value uint32 // tokens available
	max   uint32 // Release refuses to go above it
	nwait uint32 // waiters asleep or about to sleep
	seq   uint32 // futex word: waiters sleep on it
}

// SemaphoreSize is the number of bytes a Semaphore occupies.
const SemaphoreSize = 64

// A Semaphore is a counting semaphore shared between processes, like
// Python's multiprocessing.Semaphore (or, made with NewBoundedSemaphore,
// BoundedSemaphore). Acquire takes a token, waiting while there is none;
// Release adds one. A Semaphore has no owner: any process may release it,
// so the death of a process that "held" tokens cannot be detected, and its
// tokens are lost. Use an OwnedSemaphore where that matters: its permits
// have holders and are given back when a holder dies. (A waiter that dies
// while waiting stays counted as a waiter, which only costs later Releases
// a spare wake-up call.)
//
// A Release happens before the Acquire that it lets proceed (in Go memory
// model terms, it is synchronized before it).
//
// A Semaphore must not be copied after first use. The zero Semaphore is not
// usable (its methods return ErrClosed) until MultiprocAttach. Its methods
// are safe for concurrent use by goroutines and processes; Close is not
// concurrent with anything else.
type Semaphore struct {
	m    atomic.Pointer[semMem]
	reg  *region
	spin spin.Spinner
}

// NewSemaphore creates a semaphore with value tokens that Release may raise
// up to MaxSemaphoreValue.
func NewSemaphore(value int, opts ...Option) (*Semaphore, error) {
	return newSemaphore(value, MaxSemaphoreValue, opts)
}

// NewBoundedSemaphore creates a semaphore with value tokens that Release
// may not raise above value (ErrOverRelease).
func NewBoundedSemaphore(value int, opts ...Option) (*Semaphore, error) {
	return newSemaphore(value, value, opts)
}

func newSemaphore(value, max int, opts []Option) (*Semaphore, error) {
	if value < 0 || value > MaxSemaphoreValue {
		return nil, fmt.Errorf("syncprim: semaphore initial value %d out of range [0, %d]", value, MaxSemaphoreValue)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	r, err := newRegion(SemaphoreSize, &o)
	if err != nil {
		return nil, err
	}
	m := (*semMem)(r.p)
	m.value, m.max = uint32(value), uint32(max)
	r.publish(kindSemaphore)
	s := &Semaphore{reg: r}
	s.m.Store(m)
	return s, nil
}

// OpenSemaphore reaches the semaphore that NewSemaphore (or
// NewBoundedSemaphore) created in seg at offset with InSegment, typically
// in a named segment opened by an unrelated process. Close does not close
// seg.
func OpenSemaphore(seg *shm.Segment, offset int) (*Semaphore, error) {
	r, err := openRegion(seg, offset, SemaphoreSize, kindSemaphore)
	if err != nil {
		return nil, err
	}
	s := &Semaphore{reg: r}
	s.m.Store((*semMem)(r.p))
	return s, nil
}

func (m *semMem) take() bool {
	for {
		v := atomic.LoadUint32(&m.value)
		if v == 0 {
			return false
		}
		if atomic.CompareAndSwapUint32(&m.value, v, v-1) {
			race.Acquire(unsafe.Pointer(m))
			return true
		}
	}
}

// Acquire takes a token, waiting until one is available or ctx ends. On
// ctx's end it returns ctx's error and the semaphore is unchanged. A token
// that is available is taken even when ctx is already done.
func (s *Semaphore) Acquire(ctx context.Context) error {
	m := s.m.Load()
	if m == nil {
		return ErrClosed
	}
	if m.take() {
		return nil
	}
	if s.spin.Spin(m.take) {
		return nil
	}
	var stop func() bool
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for {
		seq := atomic.LoadUint32(&m.seq)
		atomic.AddUint32(&m.nwait, 1)
		if m.take() {
			atomic.AddUint32(&m.nwait, ^uint32(0))
			return nil
		}
		if err := ctx.Err(); err != nil {
			atomic.AddUint32(&m.nwait, ^uint32(0))
			m.leave()
			return err
		}
		if stop == nil && ctx.Done() != nil {
			atomic.AddUint32(&m.nwait, ^uint32(0))
			stop = wakeOnDone(ctx, &m.seq)
			continue
		}
		_, err := sleep(ctx, &m.seq, seq, 0)
		atomic.AddUint32(&m.nwait, ^uint32(0))
		if err != nil {
			m.leave()
			return err
		}
	}
}

// leave passes on a wake-up that a giving-up waiter may have consumed.
func (m *semMem) leave() {
	if atomic.LoadUint32(&m.value) > 0 && atomic.LoadUint32(&m.nwait) > 0 {
		bump(&m.seq, 1)
	}
}

// TryAcquire takes a token if one is available and reports whether it did
// (Python's acquire(False)).
func (s *Semaphore) TryAcquire() (bool, error) {
	m := s.m.Load()
	if m == nil {
		return false, ErrClosed
	}
	return m.take(), nil
}

// Release adds a token, waking one waiter. It returns ErrOverRelease, and
// changes nothing, when the value is at its maximum (the initial value of
// a bounded semaphore). Release never blocks.
func (s *Semaphore) Release() error {
	m := s.m.Load()
	if m == nil {
		return ErrClosed
	}
	for {
		v := atomic.LoadUint32(&m.value)
		if v >= atomic.LoadUint32(&m.max) {
			return ErrOverRelease
		}
		race.Release(unsafe.Pointer(m))
		if atomic.CompareAndSwapUint32(&m.value, v, v+1) {
			break
		}
	}
	if atomic.LoadUint32(&m.nwait) != 0 {
		bump(&m.seq, 1)
	}
	return nil
}

// Value returns the number of tokens available (a snapshot; Python's
// get_value).
func (s *Semaphore) Value() int {
	m := s.m.Load()
	if m == nil {
		return 0
	}
	return int(atomic.LoadUint32(&m.value))
}

// Bounded reports whether Release refuses to exceed the initial value.
func (s *Semaphore) Bounded() bool {
	m := s.m.Load()
	return m != nil && atomic.LoadUint32(&m.max) != MaxSemaphoreValue
}

// Close releases this process's handle, as Lock.Close does.
func (s *Semaphore) Close() error { return closeMapped(&s.m, s.reg) }

// MultiprocHandle describes the semaphore for another process (see
// Lock.MultiprocHandle).
func (s *Semaphore) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	return describeMapped(&s.m, s.reg, kindSemaphore)
}

// MultiprocAttach makes the zero Semaphore s a handle to the semaphore
// described by MultiprocHandle in another process. It takes ownership of
// files.
func (s *Semaphore) MultiprocAttach(files []*os.File, desc []byte) error {
	return attachMapped(&s.m, &s.reg, files, desc, kindSemaphore, "a Semaphore")
}
