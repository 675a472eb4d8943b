// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"
)

// A Queue is a FIFO queue of T shared by any number of producer and
// consumer processes, like Python's multiprocessing.Queue but without its
// feeder thread: Put returns once the item is in shared memory, where it
// survives the producer's exit.
//
// A *Queue is this process's handle. It passes to a child process as an
// argument (MultiprocHandle/MultiprocAttach), and every handle of every
// process reaches the same queue. Its methods are safe for concurrent use
// by goroutines and processes. A Queue must not be copied after first use.
type Queue[T any] struct {
	c  *core
	ti typeInfo
}

// New creates a queue of T (unbounded unless MaxSize says otherwise).
func New[T any](opts ...Option) (*Queue[T], error) {
	c, err := newCore(kindQueue, newOptions(opts))
	if err != nil {
		return nil, err
	}
	return &Queue[T]{c: c, ti: infoOf[T]()}, nil
}

// Put appends v, waiting while the queue is full (MaxSize items, or not
// enough of MaxBytes free). When it returns nil the item is in shared
// memory: the calling process may exit at once and the item is not lost.
// When ctx ends first (Python's put timeout) it returns an error matching
// both ErrFull and ctx's error, and nothing was put. An item that cannot
// be encoded, or is larger than MaxItemSize, is an error and is not put.
func (q *Queue[T]) Put(ctx context.Context, v T) error {
	return q.put(ctx, v, true)
}

// TryPut appends v if the queue has room now, and returns ErrFull
// otherwise (Python's put_nowait). It may wait for the producers' lock,
// which other producers hold only while copying an item in.
func (q *Queue[T]) TryPut(v T) error {
	return q.put(context.Background(), v, false)
}

func (q *Queue[T]) put(ctx context.Context, v T, block bool) error {
	if q.c == nil {
		return ErrClosed
	}
	e, err := encode(&q.ti, v)
	if err != nil {
		return err
	}
	return q.c.put(ctx, e, block)
}

// Get removes and returns the oldest item, waiting while the queue is
// empty. When ctx ends first (Python's get timeout) it returns an error
// matching both ErrEmpty and ctx's error, and nothing was taken. An item
// that cannot be decoded into a T is taken off the queue and reported
// as a *DecodeError.
func (q *Queue[T]) Get(ctx context.Context) (T, error) {
	return q.get(ctx, true)
}

// TryGet removes and returns the oldest item if there is one, and returns
// ErrEmpty otherwise (Python's get_nowait).
func (q *Queue[T]) TryGet() (T, error) {
	return q.get(context.Background(), false)
}

func (q *Queue[T]) get(ctx context.Context, block bool) (T, error) {
	var v T
	if q.c == nil {
		return v, ErrClosed
	}
	f, err := q.c.get(ctx, block, nil)
	if err != nil {
		return v, err
	}
	return decodeFrame[T](&q.ti, &f)
}

// decodeFrame turns a frame taken off the ring into an item.
func decodeFrame[T any](ti *typeInfo, f *frame) (v T, err error) {
	p := f.big
	if p != nil {
		// A large payload was copied out of the ring into memory of its
		// own (take), which nothing else references: a []byte or string
		// item takes it over instead of copying it a second time.
		switch {
		case f.tag == tagRaw && ti.fast == fastBytes:
			*(*[]byte)(unsafe.Pointer(&v)) = p
			return v, nil
		case f.tag == tagString && ti.fast == fastString:
			*(*string)(unsafe.Pointer(&v)) = unsafe.String(&p[0], len(p))
			return v, nil
		}
	}
	if p == nil {
		// Small payloads live in f, which must not escape: the fast path
		// keeps no reference, the codec gets a copy.
		if v, ok, err := decodeFast[T](ti, f.tag, f.small[:f.n]); ok {
			return v, err
		}
		p = bytes.Clone(f.small[:f.n])
	}
	return decode[T](ti, f.tag, p)
}

// GetBytes removes and returns the oldest item of a queue of []byte, as
// Get does, but in buf's memory when the item fits in cap(buf): the
// result is then buf[:len(item)], and nothing is allocated. A consumer of
// large items that reuses one buffer,
//
//	buf, err = queue.GetBytes(ctx, q, buf)
//
// copies each item once out of shared memory into memory already in its
// cache, where Get allocates every item anew (and a stream of megabyte
// items makes the garbage collector run every few items). An item longer
// than cap(buf) is returned in new memory, as by Get; pass the result as
// the next buf to keep it. buf's previous contents are overwritten.
// q is a *Queue[[]byte], *JoinableQueue[[]byte] or *SimpleQueue[[]byte].
// Errors are Get's.
func GetBytes(ctx context.Context, q BytesQueue, buf []byte) ([]byte, error) {
	return getBytes(ctx, q.bytesQueue(), buf)
}

// BytesQueue is a queue of []byte of any kind (Queue, JoinableQueue,
// SimpleQueue), for GetBytes.
type BytesQueue interface{ bytesQueue() *Queue[[]byte] }

func (q *Queue[T]) bytesQueue() *Queue[T]       { return q }
func (s *SimpleQueue[T]) bytesQueue() *Queue[T] { return &s.q }

func getBytes(ctx context.Context, q *Queue[[]byte], buf []byte) ([]byte, error) {
	if q == nil || q.c == nil {
		return nil, ErrClosed
	}
	f, err := q.c.get(ctx, true, buf)
	if err != nil {
		return nil, err
	}
	if f.big == nil && f.tag == tagRaw && buf != nil && f.n <= cap(buf) {
		return append(buf[:0], f.small[:f.n]...), nil
	}
	return decodeFrame[[]byte](&q.ti, &f)
}

// Len returns the number of items in the queue: exact, from two shared
// counters (a snapshot, as any size of a concurrent queue). Python's
// qsize(), which is only approximate there. It returns 0 after Close (as
// Empty returns true: there is nothing this handle can get).
func (q *Queue[T]) Len() int {
	if !q.c.enter() {
		return 0
	}
	defer q.c.mu.RUnlock()
	return int(q.c.length())
}

// Empty reports whether the queue holds no item (exact, a snapshot).
func (q *Queue[T]) Empty() bool { return q.Len() == 0 }

// Full reports whether the queue holds MaxSize items (never true without
// MaxSize).
func (q *Queue[T]) Full() bool {
	if q.c == nil {
		return false
	}
	return q.c.maxsize > 0 && uint64(q.Len()) >= q.c.maxsize
}

// MaxSize returns the queue's bound on the number of items, 0 for none.
func (q *Queue[T]) MaxSize() int {
	if q.c == nil {
		return 0
	}
	return int(q.c.maxsize)
}

// Close releases this process's handle: later calls of its methods return
// ErrClosed (Python's "Queue is closed"), and calls that wait in other
// goroutines return ErrClosed too. Items already put stay in the queue
// for the other handles; the shared memory is freed when the last handle
// of the last process is closed or its process exits. Close is
// idempotent.
func (q *Queue[T]) Close() error { return q.c.close() }

// MultiprocHandle describes the queue for another process: a duplicate of
// the segment's fd (the caller owns and closes it) and a descriptor.
func (q *Queue[T]) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	if q.c == nil {
		return nil, nil, ErrClosed
	}
	return q.c.handle()
}

// MultiprocAttach makes the zero Queue q a handle to the queue that
// MultiprocHandle described in another process. It takes ownership of
// files.
func (q *Queue[T]) MultiprocAttach(files []*os.File, desc []byte) error {
	return q.attach(files, desc, kindQueue)
}

func (q *Queue[T]) attach(files []*os.File, desc []byte, k kind) error {
	if q.c != nil {
		for _, f := range files {
			f.Close()
		}
		return fmt.Errorf("%w: MultiprocAttach on a queue in use", ErrBadHandle)
	}
	c, err := attachCore(files, desc, k)
	if err != nil {
		return err
	}
	q.c, q.ti = c, infoOf[T]()
	return nil
}

// A JoinableQueue is a Queue whose consumers report each item as done
// (TaskDone), so that Join can wait until every item put has been
// processed, like Python's multiprocessing.JoinableQueue.
//
// The count of unfinished tasks is the number of items ever put minus the
// TaskDone calls, both shared counters; it is exact.
type JoinableQueue[T any] struct {
	Queue[T]
}

// NewJoinable creates a JoinableQueue of T.
func NewJoinable[T any](opts ...Option) (*JoinableQueue[T], error) {
	c, err := newCore(kindJoinable, newOptions(opts))
	if err != nil {
		return nil, err
	}
	return &JoinableQueue[T]{Queue[T]{c: c, ti: infoOf[T]()}}, nil
}

// TaskDone reports that one item taken from the queue has been
// processed. Called more often than items were put, it returns
// ErrTaskDone and changes nothing.
func (q *JoinableQueue[T]) TaskDone() error {
	c := q.c
	if !c.enter() {
		return ErrClosed
	}
	defer c.mu.RUnlock()
	for {
		d := atomic.LoadUint64(c.done)
		if d >= atomic.LoadUint64(c.putSeq) {
			return ErrTaskDone
		}
		if atomic.CompareAndSwapUint64(c.done, d, d+1) {
			if d+1 == atomic.LoadUint64(c.putSeq) {
				signal(c.join)
			}
			return nil
		}
	}
}

// Unfinished returns the number of items put and not yet reported done
// (a snapshot).
func (q *JoinableQueue[T]) Unfinished() int {
	c := q.c
	if !c.enter() {
		return 0
	}
	defer c.mu.RUnlock()
	d := atomic.LoadUint64(c.done)
	return int(atomic.LoadUint64(c.putSeq) - d)
}

// Join waits until every item put has been reported done with TaskDone
// (at once when that is so already). It returns ctx's error when ctx ends
// first. An item whose consumer died before calling TaskDone stays
// unfinished: bound Join with ctx when consumers may die.
func (q *JoinableQueue[T]) Join(ctx context.Context) error {
	c := q.c
	if !c.enter() {
		return ErrClosed
	}
	defer c.mu.RUnlock()
	return c.wait(ctx, c.join, func() bool {
		d := atomic.LoadUint64(c.done)
		return d == atomic.LoadUint64(c.putSeq)
	}, nil, time.Time{})
}

// MultiprocHandle describes the queue for another process (see
// Queue.MultiprocHandle).
func (q *JoinableQueue[T]) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	return q.Queue.MultiprocHandle()
}

// MultiprocAttach makes the zero JoinableQueue q a handle to the queue
// that MultiprocHandle described in another process. It takes ownership
// of files.
func (q *JoinableQueue[T]) MultiprocAttach(files []*os.File, desc []byte) error {
	return q.attach(files, desc, kindJoinable)
}

// A SimpleQueue is an unbounded FIFO queue of T shared between processes,
// like Python's multiprocessing.SimpleQueue: Put, Get, Empty and Close.
// It is a Queue without MaxSize, and as robust: Put is synchronous, and
// Empty is exact across processes.
type SimpleQueue[T any] struct {
	q Queue[T]
}

// NewSimple creates a SimpleQueue of T. MaxSize does not apply.
func NewSimple[T any](opts ...Option) (*SimpleQueue[T], error) {
	o := newOptions(opts)
	o.maxsize = 0
	c, err := newCore(kindSimple, o)
	if err != nil {
		return nil, err
	}
	return &SimpleQueue[T]{Queue[T]{c: c, ti: infoOf[T]()}}, nil
}

// Put appends v (see Queue.Put); it waits only when MaxBytes are in use.
func (s *SimpleQueue[T]) Put(ctx context.Context, v T) error { return s.q.Put(ctx, v) }

// Get removes and returns the oldest item, waiting while there is none
// (see Queue.Get).
func (s *SimpleQueue[T]) Get(ctx context.Context) (T, error) { return s.q.Get(ctx) }

// TryGet removes and returns the oldest item, or returns ErrEmpty.
func (s *SimpleQueue[T]) TryGet() (T, error) { return s.q.TryGet() }

// Empty reports whether the queue holds no item (exact, a snapshot).
func (s *SimpleQueue[T]) Empty() bool { return s.q.Empty() }

// Close releases this process's handle (see Queue.Close); it is
// idempotent.
func (s *SimpleQueue[T]) Close() error { return s.q.Close() }

// MultiprocHandle describes the queue for another process (see
// Queue.MultiprocHandle).
func (s *SimpleQueue[T]) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	return s.q.MultiprocHandle()
}

// MultiprocAttach makes the zero SimpleQueue s a handle to the queue that
// MultiprocHandle described in another process. It takes ownership of
// files.
func (s *SimpleQueue[T]) MultiprocAttach(files []*os.File, desc []byte) error {
	return s.q.attach(files, desc, kindSimple)
}
