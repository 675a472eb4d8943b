// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"time"
)

// Every typed proxy below is a handle to an object in the server. All
// proxies are safe for concurrent use by many goroutines (each call is one
// request on the client's connection); a proxy can be an argument of a
// child process (MultiprocHandle) and can be stored inside shared
// containers (nested proxies). Release drops the proxy's reference.

func newProxy[P any, PP interface {
	*P
	binder
}](ctx context.Context, c *Client, typeid string, args ...any) (*P, error) {
	if c == nil {
		return nil, errors.New("manager: nil Client")
	}
	h, err := c.create(ctx, typeid, args...)
	if err != nil {
		return nil, err
	}
	p := new(P)
	PP(p).bind(h)
	return p, nil
}

// ---------------------------------------------------------------- Dict

// Dict is a proxy to a shared, insertion-ordered dict (CPython's
// manager.dict()). Keys are scalars (bool, integers, floats, string);
// values may be anything the value model carries (the package doc),
// structs and other proxies included.
type Dict[K comparable, V any] struct{ base }

// NewDict creates an empty shared dict, or one holding the entries of
// init (in an unspecified order, since Go maps have none).
func NewDict[K comparable, V any](ctx context.Context, c *Client, init ...map[K]V) (*Dict[K, V], error) {
	if len(init) > 1 {
		return nil, errors.New("manager: NewDict takes at most one initial map")
	}
	args := []any{}
	if len(init) == 1 {
		args = append(args, init[0])
	}
	return newProxy[Dict[K, V]](ctx, c, "dict", args...)
}

// Get returns d[k], or an error matching ErrKeyNotFound.
func (d *Dict[K, V]) Get(ctx context.Context, k K) (V, error) {
	return callAs[V](ctx, &d.base, "Get", k)
}

// GetOr returns d[k], or def when k is missing (Python's d.get(k, def)).
func (d *Dict[K, V]) GetOr(ctx context.Context, k K, def V) (V, error) {
	return callAs[V](ctx, &d.base, "GetOr", k, def)
}

// Set sets d[k] = v.
func (d *Dict[K, V]) Set(ctx context.Context, k K, v V) error {
	return callNone(ctx, &d.base, "Set", k, v)
}

// SetDefault returns d[k], setting it to v first if k is missing.
func (d *Dict[K, V]) SetDefault(ctx context.Context, k K, v V) (V, error) {
	return callAs[V](ctx, &d.base, "SetDefault", k, v)
}

// Delete removes k (ErrKeyNotFound if missing).
func (d *Dict[K, V]) Delete(ctx context.Context, k K) error {
	return callNone(ctx, &d.base, "Delete", k)
}

// Pop removes k and returns its value (ErrKeyNotFound if missing).
func (d *Dict[K, V]) Pop(ctx context.Context, k K) (V, error) {
	return callAs[V](ctx, &d.base, "Pop", k)
}

// Contains reports whether k is in d.
func (d *Dict[K, V]) Contains(ctx context.Context, k K) (bool, error) {
	return callAs[bool](ctx, &d.base, "Contains", k)
}

// Len returns the number of entries.
func (d *Dict[K, V]) Len(ctx context.Context) (int, error) {
	return callAs[int](ctx, &d.base, "Len")
}

// Keys returns the keys in insertion order.
func (d *Dict[K, V]) Keys(ctx context.Context) ([]K, error) {
	return callAs[[]K](ctx, &d.base, "Keys")
}

// Values returns the values in insertion order.
func (d *Dict[K, V]) Values(ctx context.Context) ([]V, error) {
	return callAs[[]V](ctx, &d.base, "Values")
}

// Items returns a snapshot of the entries in insertion order. Unlike
// iterating a CPython DictProxy, a change during the iteration is not an
// error: the iteration walks the snapshot.
func (d *Dict[K, V]) Items(ctx context.Context) (iter.Seq2[K, V], error) {
	v, c, err := d.call(ctx, "Items")
	if err != nil {
		return nil, err
	}
	dec := newDecoder(c, v)
	defer dec.done()
	items := v.GetList().GetItems()
	keys := make([]K, len(items))
	vals := make([]V, len(items))
	for i, it := range items {
		pair := it.GetList().GetItems()
		if len(pair) != 2 {
			return nil, fmt.Errorf("manager: bad item %d from the server", i)
		}
		if err := dec.decodeInto(pair[0], reflect.ValueOf(&keys[i]).Elem(), 0); err != nil {
			return nil, err
		}
		if err := dec.decodeInto(pair[1], reflect.ValueOf(&vals[i]).Elem(), 0); err != nil {
			return nil, err
		}
	}
	return func(yield func(K, V) bool) {
		for i := range keys {
			if !yield(keys[i], vals[i]) {
				return
			}
		}
	}, nil
}

// Update sets every entry of m.
func (d *Dict[K, V]) Update(ctx context.Context, m map[K]V) error {
	return callNone(ctx, &d.base, "Update", m)
}

// Clear removes every entry.
func (d *Dict[K, V]) Clear(ctx context.Context) error {
	return callNone(ctx, &d.base, "Clear")
}

// Copy returns a copy of the dict's contents as a Go map.
func (d *Dict[K, V]) Copy(ctx context.Context) (map[K]V, error) {
	return GetValue[map[K]V](ctx, d)
}

// ---------------------------------------------------------------- List

// List is a proxy to a shared list (CPython's manager.list()). Indexes
// follow Python: negative ones count from the end.
type List[T any] struct{ base }

// NewList creates a shared list holding items.
func NewList[T any](ctx context.Context, c *Client, items ...T) (*List[T], error) {
	if items == nil {
		items = []T{}
	}
	return newProxy[List[T]](ctx, c, "list", items)
}

// Append appends v.
func (l *List[T]) Append(ctx context.Context, v T) error {
	return callNone(ctx, &l.base, "Append", v)
}

// Extend appends vs.
func (l *List[T]) Extend(ctx context.Context, vs ...T) error {
	if vs == nil {
		vs = []T{}
	}
	return callNone(ctx, &l.base, "Extend", vs)
}

// Get returns l[i] (ErrIndexOutOfRange when out of range).
func (l *List[T]) Get(ctx context.Context, i int) (T, error) {
	return callAs[T](ctx, &l.base, "Get", i)
}

// Set sets l[i] = v.
func (l *List[T]) Set(ctx context.Context, i int, v T) error {
	return callNone(ctx, &l.base, "Set", i, v)
}

// Len returns the length.
func (l *List[T]) Len(ctx context.Context) (int, error) {
	return callAs[int](ctx, &l.base, "Len")
}

// Pop removes and returns l[i] (the last item when i is omitted).
func (l *List[T]) Pop(ctx context.Context, i ...int) (T, error) {
	if len(i) > 1 {
		var zero T
		return zero, errors.New("manager: Pop takes at most one index")
	}
	args := make([]any, len(i))
	for k, x := range i {
		args[k] = x
	}
	return callAs[T](ctx, &l.base, "Pop", args...)
}

// Insert inserts v before index i.
func (l *List[T]) Insert(ctx context.Context, i int, v T) error {
	return callNone(ctx, &l.base, "Insert", i, v)
}

// Remove removes the first item equal to v (ErrNotFound if none).
func (l *List[T]) Remove(ctx context.Context, v T) error {
	return callNone(ctx, &l.base, "Remove", v)
}

// Index returns the index of the first item equal to v (ErrNotFound).
func (l *List[T]) Index(ctx context.Context, v T) (int, error) {
	return callAs[int](ctx, &l.base, "Index", v)
}

// Count returns how many items equal v.
func (l *List[T]) Count(ctx context.Context, v T) (int, error) {
	return callAs[int](ctx, &l.base, "Count", v)
}

// Contains reports whether an item equals v.
func (l *List[T]) Contains(ctx context.Context, v T) (bool, error) {
	return callAs[bool](ctx, &l.base, "Contains", v)
}

// Slice returns l[lo:hi] with Python's rules (clamped, negative from the
// end); use Slice(ctx, 0, -0) style bounds through SliceFrom for open ends.
func (l *List[T]) Slice(ctx context.Context, lo, hi int) ([]T, error) {
	return callAs[[]T](ctx, &l.base, "Slice", lo, hi)
}

// SliceFrom returns l[lo:].
func (l *List[T]) SliceFrom(ctx context.Context, lo int) ([]T, error) {
	return callAs[[]T](ctx, &l.base, "Slice", lo, nil)
}

// Repeat replaces the list by n copies of itself (Python's l *= n).
func (l *List[T]) Repeat(ctx context.Context, n int) error {
	return callNone(ctx, &l.base, "Repeat", n)
}

// Reverse reverses the list in place.
func (l *List[T]) Reverse(ctx context.Context) error {
	return callNone(ctx, &l.base, "Reverse")
}

// Clear removes every item.
func (l *List[T]) Clear(ctx context.Context) error {
	return callNone(ctx, &l.base, "Clear")
}

// Copy returns a copy of the items (a proxy inside stays a proxy; a plain
// value is a copy, so changing it does not change the shared list).
func (l *List[T]) Copy(ctx context.Context) ([]T, error) {
	return GetValue[[]T](ctx, l)
}

// All returns a snapshot of the items as an iterator.
func (l *List[T]) All(ctx context.Context) (iter.Seq2[int, T], error) {
	items, err := l.Copy(ctx)
	if err != nil {
		return nil, err
	}
	return func(yield func(int, T) bool) {
		for i, v := range items {
			if !yield(i, v) {
				return
			}
		}
	}, nil
}

// ---------------------------------------------------------------- Namespace

// Namespace is a proxy to a shared attribute bag (CPython's
// manager.Namespace()).
type Namespace struct{ base }

// NewNamespace creates a namespace with the given attributes.
func NewNamespace(ctx context.Context, c *Client, attrs ...map[string]any) (*Namespace, error) {
	if len(attrs) > 1 {
		return nil, errors.New("manager: NewNamespace takes at most one map")
	}
	args := []any{}
	if len(attrs) == 1 {
		args = append(args, attrs[0])
	}
	return newProxy[Namespace](ctx, c, "Namespace", args...)
}

// Get returns an attribute (ErrKeyNotFound, Python's AttributeError).
func (n *Namespace) Get(ctx context.Context, name string) (any, error) {
	return callAs[any](ctx, &n.base, "Get", name)
}

// Set sets an attribute.
func (n *Namespace) Set(ctx context.Context, name string, v any) error {
	return callNone(ctx, &n.base, "Set", name, v)
}

// Delete deletes an attribute.
func (n *Namespace) Delete(ctx context.Context, name string) error {
	return callNone(ctx, &n.base, "Delete", name)
}

// Has reports whether the attribute exists.
func (n *Namespace) Has(ctx context.Context, name string) (bool, error) {
	return callAs[bool](ctx, &n.base, "Has", name)
}

// Names returns the attribute names in the order they were first set.
func (n *Namespace) Names(ctx context.Context) ([]string, error) {
	return callAs[[]string](ctx, &n.base, "Names")
}

// String returns Python's repr, e.g. "Namespace(name='Bob', age=3)".
func (n *Namespace) String(ctx context.Context) (string, error) {
	return callAs[string](ctx, &n.base, "String")
}

// NamespaceGet returns a namespace attribute decoded into a T.
func NamespaceGet[T any](ctx context.Context, n *Namespace, name string) (T, error) {
	return callAs[T](ctx, &n.base, "Get", name)
}

// ---------------------------------------------------------------- Value, Array

// Value is a proxy to one shared value (CPython's manager.Value).
type Value[T any] struct{ base }

// NewValue creates a shared value.
func NewValue[T any](ctx context.Context, c *Client, v T) (*Value[T], error) {
	return newProxy[Value[T]](ctx, c, "Value", v)
}

// Get returns the value.
func (v *Value[T]) Get(ctx context.Context) (T, error) { return callAs[T](ctx, &v.base, "Get") }

// Set sets the value.
func (v *Value[T]) Set(ctx context.Context, x T) error { return callNone(ctx, &v.base, "Set", x) }

// Add adds delta to a numeric value in the server, atomically, and
// returns the new value (ErrTypeError for a non-number).
func (v *Value[T]) Add(ctx context.Context, delta T) (T, error) {
	return callAs[T](ctx, &v.base, "Add", delta)
}

// Array is a proxy to a shared fixed-length array of scalars (CPython's
// manager.Array).
type Array[T any] struct{ base }

// NewArray creates a shared array holding items.
func NewArray[T any](ctx context.Context, c *Client, items []T) (*Array[T], error) {
	if items == nil {
		items = []T{}
	}
	return newProxy[Array[T]](ctx, c, "Array", items)
}

// Get returns a[i].
func (a *Array[T]) Get(ctx context.Context, i int) (T, error) {
	return callAs[T](ctx, &a.base, "Get", i)
}

// Set sets a[i] = v.
func (a *Array[T]) Set(ctx context.Context, i int, v T) error {
	return callNone(ctx, &a.base, "Set", i, v)
}

// Len returns the length.
func (a *Array[T]) Len(ctx context.Context) (int, error) { return callAs[int](ctx, &a.base, "Len") }

// Slice returns a[lo:hi] with Python's rules.
func (a *Array[T]) Slice(ctx context.Context, lo, hi int) ([]T, error) {
	return callAs[[]T](ctx, &a.base, "Slice", lo, hi)
}

// Copy returns all the items.
func (a *Array[T]) Copy(ctx context.Context) ([]T, error) { return GetValue[[]T](ctx, a) }

// ---------------------------------------------------------------- Queue

// Queue is a proxy to a shared FIFO queue (CPython's manager.Queue(), a
// queue.Queue in the server). Put and Get block in the server, and ctx
// cancels the wait there.
type Queue[T any] struct{ base }

// NewQueue creates a queue holding at most maxsize items (0: no bound).
func NewQueue[T any](ctx context.Context, c *Client, maxsize int) (*Queue[T], error) {
	return newProxy[Queue[T]](ctx, c, "Queue", maxsize)
}

// Put adds v, waiting while the queue is full.
func (q *Queue[T]) Put(ctx context.Context, v T) error { return callNone(ctx, &q.base, "Put", v, true) }

// PutNowait adds v or returns ErrFull at once.
func (q *Queue[T]) PutNowait(ctx context.Context, v T) error {
	return callNone(ctx, &q.base, "Put", v, false)
}

// Get removes and returns the oldest item, waiting while the queue is
// empty. A Get that ctx cancels takes nothing.
func (q *Queue[T]) Get(ctx context.Context) (T, error) { return callAs[T](ctx, &q.base, "Get", true) }

// GetNowait returns the oldest item or ErrEmpty at once.
func (q *Queue[T]) GetNowait(ctx context.Context) (T, error) {
	return callAs[T](ctx, &q.base, "Get", false)
}

// GetTimeout is Get bounded by d; it returns ErrEmpty when d passes.
func (q *Queue[T]) GetTimeout(ctx context.Context, d time.Duration) (T, error) {
	tctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := q.Get(tctx)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return v, fmt.Errorf("%w (after %v)", ErrEmpty, d)
	}
	return v, err
}

// Qsize returns the number of items.
func (q *Queue[T]) Qsize(ctx context.Context) (int, error) { return callAs[int](ctx, &q.base, "Qsize") }

// Empty reports whether the queue is empty.
func (q *Queue[T]) Empty(ctx context.Context) (bool, error) {
	return callAs[bool](ctx, &q.base, "Empty")
}

// Full reports whether the queue is full.
func (q *Queue[T]) Full(ctx context.Context) (bool, error) { return callAs[bool](ctx, &q.base, "Full") }

// JoinableQueue is a Queue whose consumers report finished items
// (TaskDone) so that producers can wait for all of them (Join).
type JoinableQueue[T any] struct{ Queue[T] }

// NewJoinableQueue creates a joinable queue (maxsize 0: no bound).
func NewJoinableQueue[T any](ctx context.Context, c *Client, maxsize int) (*JoinableQueue[T], error) {
	return newProxy[JoinableQueue[T]](ctx, c, "JoinableQueue", maxsize)
}

// TaskDone reports that an item taken with Get is finished
// (ErrOverRelease when called more often than items were put).
func (q *JoinableQueue[T]) TaskDone(ctx context.Context) error {
	return callNone(ctx, &q.base, "TaskDone")
}

// Join waits until every item put has been reported done.
func (q *JoinableQueue[T]) Join(ctx context.Context) error { return callNone(ctx, &q.base, "Join") }

// ---------------------------------------------------------------- locks

// Lock is a proxy to a lock in the server (CPython's manager.Lock()).
// Unlike CPython's, it knows its holder's connection: when a client that
// holds it disconnects or dies, the lock is released and the next
// acquirer's Acquire returns ErrOwnerDead (holding the lock). Any client
// may release a held Lock, as with threading.Lock.
type Lock struct{ base }

// NewLock creates a lock.
func NewLock(ctx context.Context, c *Client) (*Lock, error) {
	return newProxy[Lock](ctx, c, "Lock")
}

// Acquire waits for the lock. If ctx ends first it returns ctx.Err() and
// does not hold the lock. ErrOwnerDead means the lock is held and its
// previous holder died holding it.
func (l *Lock) Acquire(ctx context.Context) error {
	_, err := callAs[bool](ctx, &l.base, "Acquire", true)
	return err
}

// TryAcquire takes the lock if it is free and reports whether it did.
func (l *Lock) TryAcquire(ctx context.Context) (bool, error) {
	ok, err := callAs[bool](ctx, &l.base, "Acquire", false)
	if errors.Is(err, ErrOwnerDead) {
		return true, err
	}
	return ok, err
}

// Release releases the lock (ErrNotHeld if it is not held).
func (l *Lock) Release(ctx context.Context) error { return callNone(ctx, &l.base, "Release") }

// Locked reports whether the lock is held.
func (l *Lock) Locked(ctx context.Context) (bool, error) { return callAs[bool](ctx, &l.base, "Locked") }

// Free drops the proxy's reference to the lock object (Release on other
// proxies; named Free here because Release is the lock operation).
func (l *Lock) Free(ctx context.Context) error { return l.base.Release(ctx) }

// RLock is a re-entrant lock in the server. Its holder is this proxy
// value (shared by the goroutines that use it) on this connection: a copy
// attached in another process, or another proxy of the same object, is a
// different holder. Releasing it from a non-holder is ErrNotHeld.
type RLock struct{ Lock }

// NewRLock creates a re-entrant lock.
func NewRLock(ctx context.Context, c *Client) (*RLock, error) {
	return newProxy[RLock](ctx, c, "RLock")
}

// Semaphore is a proxy to a counting semaphore in the server.
type Semaphore struct{ base }

// NewSemaphore creates a semaphore with the given value.
func NewSemaphore(ctx context.Context, c *Client, value int) (*Semaphore, error) {
	return newProxy[Semaphore](ctx, c, "Semaphore", value)
}

// NewBoundedSemaphore creates a semaphore that may not be released above
// its initial value (ErrOverRelease).
func NewBoundedSemaphore(ctx context.Context, c *Client, value int) (*Semaphore, error) {
	return newProxy[Semaphore](ctx, c, "BoundedSemaphore", value)
}

// Acquire decrements the semaphore, waiting while it is zero. If ctx ends
// first it returns ctx.Err() and the value is unchanged.
func (s *Semaphore) Acquire(ctx context.Context) error {
	_, err := callAs[bool](ctx, &s.base, "Acquire", true)
	return err
}

// TryAcquire decrements the semaphore if it is positive.
func (s *Semaphore) TryAcquire(ctx context.Context) (bool, error) {
	return callAs[bool](ctx, &s.base, "Acquire", false)
}

// Release increments the semaphore.
func (s *Semaphore) Release(ctx context.Context) error { return callNone(ctx, &s.base, "Release") }

// Value returns the current value.
func (s *Semaphore) Value(ctx context.Context) (int, error) {
	return callAs[int](ctx, &s.base, "Value")
}

// Free drops the proxy's reference to the semaphore object.
func (s *Semaphore) Free(ctx context.Context) error { return s.base.Release(ctx) }

// Condition is a proxy to a condition variable in the server, over its own
// RLock or over a Lock/RLock given at creation.
type Condition struct{ Lock }

// NewCondition creates a condition. lock, if given, is the Lock or RLock
// it uses (a new RLock otherwise).
func NewCondition(ctx context.Context, c *Client, lock ...*Lock) (*Condition, error) {
	args := []any{}
	if len(lock) > 1 {
		return nil, errors.New("manager: NewCondition takes at most one lock")
	}
	if len(lock) == 1 {
		args = append(args, lock[0])
	}
	return newProxy[Condition](ctx, c, "Condition", args...)
}

// Wait releases the lock (which the caller must hold: ErrNotHeld),
// waits for a notification, and re-acquires the lock before returning,
// also when ctx ends (then it returns ctx.Err()).
func (c *Condition) Wait(ctx context.Context) error { return callNone(ctx, &c.base, "Wait") }

// WaitFor waits until pred returns true (checked with the lock held, in
// the caller's process, like CPython's client-side wait_for).
func (c *Condition) WaitFor(ctx context.Context, pred func() (bool, error)) error {
	for {
		ok, err := pred()
		if err != nil || ok {
			return err
		}
		if err := c.Wait(ctx); err != nil {
			return err
		}
	}
}

// Notify wakes up to n waiters (one when n is omitted).
func (c *Condition) Notify(ctx context.Context, n ...int) error {
	args := []any{}
	if len(n) > 0 {
		args = append(args, n[0])
	}
	return callNone(ctx, &c.base, "Notify", args...)
}

// NotifyAll wakes every waiter.
func (c *Condition) NotifyAll(ctx context.Context) error { return callNone(ctx, &c.base, "NotifyAll") }

// Event is a proxy to an event in the server.
type Event struct{ base }

// NewEvent creates an event, not set.
func NewEvent(ctx context.Context, c *Client) (*Event, error) {
	return newProxy[Event](ctx, c, "Event")
}

// Set sets the event, waking every waiter.
func (e *Event) Set(ctx context.Context) error { return callNone(ctx, &e.base, "Set") }

// Clear clears the event.
func (e *Event) Clear(ctx context.Context) error { return callNone(ctx, &e.base, "Clear") }

// IsSet reports whether the event is set.
func (e *Event) IsSet(ctx context.Context) (bool, error) { return callAs[bool](ctx, &e.base, "IsSet") }

// Wait waits until the event is set (ctx.Err() if ctx ends first).
func (e *Event) Wait(ctx context.Context) error { return callNone(ctx, &e.base, "Wait") }

// Barrier is a proxy to a barrier in the server (threading.Barrier
// without an action).
type Barrier struct{ base }

// NewBarrier creates a barrier for parties waiters.
func NewBarrier(ctx context.Context, c *Client, parties int) (*Barrier, error) {
	return newProxy[Barrier](ctx, c, "Barrier", parties)
}

// Wait waits until parties callers are waiting and returns this caller's
// arrival index (0 for the first). If ctx ends first, the barrier breaks:
// every waiter, this one included, gets ErrBrokenBarrier.
func (b *Barrier) Wait(ctx context.Context) (int, error) { return callAs[int](ctx, &b.base, "Wait") }

// Abort breaks the barrier.
func (b *Barrier) Abort(ctx context.Context) error { return callNone(ctx, &b.base, "Abort") }

// Reset returns the barrier to its initial state; current waiters get
// ErrBrokenBarrier.
func (b *Barrier) Reset(ctx context.Context) error { return callNone(ctx, &b.base, "Reset") }

// Parties returns the number of parties.
func (b *Barrier) Parties(ctx context.Context) (int, error) {
	return callAs[int](ctx, &b.base, "Parties")
}

// NWaiting returns the number of callers waiting.
func (b *Barrier) NWaiting(ctx context.Context) (int, error) {
	return callAs[int](ctx, &b.base, "NWaiting")
}

// Broken reports whether the barrier is broken.
func (b *Barrier) Broken(ctx context.Context) (bool, error) {
	return callAs[bool](ctx, &b.base, "Broken")
}
