// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/multiproc/multiproc/internal/base/race"
	"github.com/multiproc/multiproc/internal/base/spin"
	"github.com/multiproc/multiproc/shm"
)

// eventMem is the shared layout of an Event: 16 bytes.
type eventMem struct {
	magic uint32
	flag  uint32 // 1 when set
	nwait uint32 // waiters asleep or about to sleep
	seq   uint32 // futex word: waiters sleep on it
}

// EventSize is the number of bytes an Event occupies.
const EventSize = 64

// An Event is a flag shared between processes, like Python's
// multiprocessing.Event: Set raises it and wakes every waiter, Clear
// lowers it, Wait waits until it is raised. A Set happens before every
// Wait that returns because of it.
//
// An Event has no owner: nothing is detected when a process that was to
// set it dies; bound waits with a context.
//
// An Event must not be copied after first use. The zero Event is not usable
// (its methods return ErrClosed) until MultiprocAttach. Its methods are safe
// for concurrent use by goroutines and processes; Close is not concurrent
// with anything else.
type Event struct {
	m    atomic.Pointer[eventMem]
	reg  *region
	spin spin.Spinner
}

// NewEvent creates an Event, initially clear.
func NewEvent(opts ...Option) (*Event, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	r, err := newRegion(EventSize, &o)
	if err != nil {
		return nil, err
	}
	r.publish(kindEvent)
	e := &Event{reg: r}
	e.m.Store((*eventMem)(r.p))
	return e, nil
}

// OpenEvent reaches the Event created in seg at offset with InSegment.
func OpenEvent(seg *shm.Segment, offset int) (*Event, error) {
	r, err := openRegion(seg, offset, EventSize, kindEvent)
	if err != nil {
		return nil, err
	}
	e := &Event{reg: r}
	e.m.Store((*eventMem)(r.p))
	return e, nil
}

// Set raises the flag and wakes every waiter.
func (e *Event) Set() error {
	m := e.m.Load()
	if m == nil {
		return ErrClosed
	}
	race.Release(unsafe.Pointer(m))
	if atomic.SwapUint32(&m.flag, 1) == 0 && atomic.LoadUint32(&m.nwait) != 0 {
		bumpAll(&m.seq)
	}
	return nil
}

// Clear lowers the flag.
func (e *Event) Clear() error {
	m := e.m.Load()
	if m == nil {
		return ErrClosed
	}
	atomic.StoreUint32(&m.flag, 0)
	return nil
}

// IsSet reports whether the flag is raised.
func (e *Event) IsSet() bool {
	m := e.m.Load()
	return m != nil && atomic.LoadUint32(&m.flag) != 0
}

// Wait returns nil as soon as the flag is raised (at once if it is), or
// ctx's error when ctx ends first (Python's wait(timeout) returning False).
func (e *Event) Wait(ctx context.Context) error {
	m := e.m.Load()
	if m == nil {
		return ErrClosed
	}
	isSet := func() bool {
		if atomic.LoadUint32(&m.flag) != 0 {
			race.Acquire(unsafe.Pointer(m))
			return true
		}
		return false
	}
	if isSet() {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if e.spin.Spin(isSet) {
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
		if isSet() {
			atomic.AddUint32(&m.nwait, ^uint32(0))
			return nil
		}
		if err := ctx.Err(); err != nil {
			atomic.AddUint32(&m.nwait, ^uint32(0))
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
			if isSet() {
				return nil
			}
			return err
		}
	}
}

// Close releases this process's handle, as Lock.Close does.
func (e *Event) Close() error { return closeMapped(&e.m, e.reg) }

// MultiprocHandle describes the event for another process (see
// Lock.MultiprocHandle).
func (e *Event) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	return describeMapped(&e.m, e.reg, kindEvent)
}

// MultiprocAttach makes the zero Event e a handle to the event described
// by MultiprocHandle in another process. It takes ownership of files.
func (e *Event) MultiprocAttach(files []*os.File, desc []byte) error {
	return attachMapped(&e.m, &e.reg, files, desc, kindEvent, "an Event")
}
