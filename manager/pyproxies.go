// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/multiproc/multiproc/ipc/pickle"
)

// Typed proxies to objects in a CPython manager: PyDict, PyList and
// PyQueue wrap a PyObject and convert arguments and results with the
// pickle codec (see ipc/pickle for the Go type of each Python type). A
// New* function creates the object through the SyncManager typeid ("dict",
// "list", "Queue"); a *From function wraps an object obtained otherwise,
// such as one published by name with BaseManager.register("get_queue",
// callable=...) and made with PyClient.Create(ctx, "get_queue").

func pyCallAs[T any](ctx context.Context, o *PyObject, method string, args ...any) (T, error) {
	var out T
	err := o.CallInto(ctx, &out, method, args...)
	return out, err
}

func pyCallNone(ctx context.Context, o *PyObject, method string, args ...any) error {
	_, err := o.Call(ctx, method, args...)
	return err
}

// ---------------------------------------------------------------- PyDict

// PyDict is a proxy to a dict in a CPython manager (DictProxy).
type PyDict[K comparable, V any] struct{ obj *PyObject }

// NewPyDict creates an empty dict (manager.dict()).
func NewPyDict[K comparable, V any](ctx context.Context, c *PyClient) (*PyDict[K, V], error) {
	o, err := c.Create(ctx, "dict")
	if err != nil {
		return nil, err
	}
	return &PyDict[K, V]{o}, nil
}

// PyDictFrom wraps an object that behaves as a dict.
func PyDictFrom[K comparable, V any](o *PyObject) *PyDict[K, V] { return &PyDict[K, V]{o} }

// Object returns the underlying PyObject.
func (d *PyDict[K, V]) Object() *PyObject { return d.obj }

// Get returns d[k], or an error matching ErrKeyNotFound.
func (d *PyDict[K, V]) Get(ctx context.Context, k K) (V, error) {
	return pyCallAs[V](ctx, d.obj, "__getitem__", k)
}

// GetOr returns d.get(k, def).
func (d *PyDict[K, V]) GetOr(ctx context.Context, k K, def V) (V, error) {
	return pyCallAs[V](ctx, d.obj, "get", k, def)
}

// Pop removes k and returns its value, or fails with an error matching
// ErrKeyNotFound.
func (d *PyDict[K, V]) Pop(ctx context.Context, k K) (V, error) {
	return pyCallAs[V](ctx, d.obj, "pop", k)
}

// SetDefault returns d[k], first setting it to v if k is missing.
func (d *PyDict[K, V]) SetDefault(ctx context.Context, k K, v V) (V, error) {
	return pyCallAs[V](ctx, d.obj, "setdefault", k, v)
}

// Set sets d[k] = v.
func (d *PyDict[K, V]) Set(ctx context.Context, k K, v V) error {
	return pyCallNone(ctx, d.obj, "__setitem__", k, v)
}

// Delete removes k, or fails with an error matching ErrKeyNotFound.
func (d *PyDict[K, V]) Delete(ctx context.Context, k K) error {
	return pyCallNone(ctx, d.obj, "__delitem__", k)
}

// Contains reports whether k is in the dict.
func (d *PyDict[K, V]) Contains(ctx context.Context, k K) (bool, error) {
	return pyCallAs[bool](ctx, d.obj, "__contains__", k)
}

// Len returns the number of items.
func (d *PyDict[K, V]) Len(ctx context.Context) (int, error) {
	return pyCallAs[int](ctx, d.obj, "__len__")
}

// Keys returns the keys in the dict's order.
func (d *PyDict[K, V]) Keys(ctx context.Context) ([]K, error) {
	return pyCallAs[[]K](ctx, d.obj, "keys")
}

// Update sets every entry of m.
func (d *PyDict[K, V]) Update(ctx context.Context, m map[K]V) error {
	return pyCallNone(ctx, d.obj, "update", m)
}

// Clear removes every item.
func (d *PyDict[K, V]) Clear(ctx context.Context) error { return pyCallNone(ctx, d.obj, "clear") }

// Copy returns a copy of the dict.
func (d *PyDict[K, V]) Copy(ctx context.Context) (map[K]V, error) {
	return pyCallAs[map[K]V](ctx, d.obj, "copy")
}

// Release drops the proxy's reference.
func (d *PyDict[K, V]) Release(ctx context.Context) error { return d.obj.Release(ctx) }

// ---------------------------------------------------------------- PyList

// PyList is a proxy to a list in a CPython manager (ListProxy).
type PyList[T any] struct{ obj *PyObject }

// NewPyList creates a list holding items (manager.list(items)).
func NewPyList[T any](ctx context.Context, c *PyClient, items ...T) (*PyList[T], error) {
	if items == nil {
		items = []T{}
	}
	o, err := c.Create(ctx, "list", items)
	if err != nil {
		return nil, err
	}
	return &PyList[T]{o}, nil
}

// PyListFrom wraps an object that behaves as a list.
func PyListFrom[T any](o *PyObject) *PyList[T] { return &PyList[T]{o} }

// Object returns the underlying PyObject.
func (l *PyList[T]) Object() *PyObject { return l.obj }

// Append appends v.
func (l *PyList[T]) Append(ctx context.Context, v T) error {
	return pyCallNone(ctx, l.obj, "append", v)
}

// Extend appends vs.
func (l *PyList[T]) Extend(ctx context.Context, vs ...T) error {
	if vs == nil {
		vs = []T{}
	}
	return pyCallNone(ctx, l.obj, "extend", vs)
}

// Get returns l[i] (negative i counts from the end), or an error matching
// ErrIndexOutOfRange.
func (l *PyList[T]) Get(ctx context.Context, i int) (T, error) {
	return pyCallAs[T](ctx, l.obj, "__getitem__", i)
}

// Set sets l[i] = v.
func (l *PyList[T]) Set(ctx context.Context, i int, v T) error {
	return pyCallNone(ctx, l.obj, "__setitem__", i, v)
}

// Insert inserts v before index i.
func (l *PyList[T]) Insert(ctx context.Context, i int, v T) error {
	return pyCallNone(ctx, l.obj, "insert", i, v)
}

// Delete removes l[i], or fails with an error matching ErrIndexOutOfRange.
func (l *PyList[T]) Delete(ctx context.Context, i int) error {
	return pyCallNone(ctx, l.obj, "__delitem__", i)
}

// Remove removes the first item equal to v, or fails with an error
// matching ErrNotFound.
func (l *PyList[T]) Remove(ctx context.Context, v T) error {
	return notFound(pyCallNone(ctx, l.obj, "remove", v))
}

// Index returns the index of the first item equal to v, or fails with an
// error matching ErrNotFound.
func (l *PyList[T]) Index(ctx context.Context, v T) (int, error) {
	i, err := pyCallAs[int](ctx, l.obj, "index", v)
	return i, notFound(err)
}

// Count returns how many items equal v.
func (l *PyList[T]) Count(ctx context.Context, v T) (int, error) {
	return pyCallAs[int](ctx, l.obj, "count", v)
}

// Contains reports whether an item equals v.
func (l *PyList[T]) Contains(ctx context.Context, v T) (bool, error) {
	return pyCallAs[bool](ctx, l.obj, "__contains__", v)
}

// Reverse reverses the list in place.
func (l *PyList[T]) Reverse(ctx context.Context) error { return pyCallNone(ctx, l.obj, "reverse") }

// notFound maps list.remove's and list.index's ValueError to ErrNotFound.
func notFound(err error) error {
	var exc *pickle.Exception
	if errors.As(err, &exc) && exc.Name == "ValueError" {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// Len returns the list's length.
func (l *PyList[T]) Len(ctx context.Context) (int, error) {
	return pyCallAs[int](ctx, l.obj, "__len__")
}

// Pop removes and returns the last item, or fails with an error matching
// ErrIndexOutOfRange.
func (l *PyList[T]) Pop(ctx context.Context) (T, error) { return pyCallAs[T](ctx, l.obj, "pop") }

// Copy returns a copy of the list.
func (l *PyList[T]) Copy(ctx context.Context) ([]T, error) {
	return pyCallAs[[]T](ctx, l.obj, "#GETVALUE")
}

// Release drops the proxy's reference.
func (l *PyList[T]) Release(ctx context.Context) error { return l.obj.Release(ctx) }

// ---------------------------------------------------------------- PyQueue

// PyQueue is a proxy to a queue.Queue in a CPython manager
// (manager.Queue(), or one published by name).
type PyQueue[T any] struct{ obj *PyObject }

// NewPyQueue creates a queue of at most maxsize items (0: unbounded).
func NewPyQueue[T any](ctx context.Context, c *PyClient, maxsize int) (*PyQueue[T], error) {
	o, err := c.Create(ctx, "Queue", maxsize)
	if err != nil {
		return nil, err
	}
	return &PyQueue[T]{o}, nil
}

// PyQueueFrom wraps an object that behaves as a queue.Queue.
func PyQueueFrom[T any](o *PyObject) *PyQueue[T] { return &PyQueue[T]{o} }

// Object returns the underlying PyObject.
func (q *PyQueue[T]) Object() *PyObject { return q.obj }

// pyWaitSlice is how long one blocking get or put waits in the server.
// A blocking call waits in slices so that cancelling ctx never leaves the
// server holding a call whose answer nobody reads (an item got for a
// caller that is gone would be lost): it returns within a slice.
const pyWaitSlice = 100 * time.Millisecond

// sliced runs a blocking queue method ("get" or "put") in slices of
// pyWaitSlice until it succeeds, ctx ends, or it fails otherwise.
func (q *PyQueue[T]) sliced(ctx context.Context, out any, method string, args []any, retry error) error {
	for {
		wait := pyWaitSlice
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, max(time.Until(dl), time.Millisecond))
		}
		// The call itself is not cancelled: the server answers within the
		// slice, and abandoning it could lose an item.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait+time.Minute)
		a := append(append([]any{}, args...), true, wait.Seconds())
		var err error
		if out != nil {
			err = q.obj.CallInto(cctx, out, method, a...)
		} else {
			_, err = q.obj.Call(cctx, method, a...)
		}
		cancel()
		if !errors.Is(err, retry) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("manager: python queue %s: %w", method, ctx.Err())
		}
	}
}

// Put adds v, waiting while the queue is full until ctx ends.
func (q *PyQueue[T]) Put(ctx context.Context, v T) error {
	return q.sliced(ctx, nil, "put", []any{v}, ErrFull)
}

// PutNowait adds v, or fails with an error matching ErrFull.
func (q *PyQueue[T]) PutNowait(ctx context.Context, v T) error {
	return pyCallNone(ctx, q.obj, "put_nowait", v)
}

// Get removes and returns an item, waiting until one arrives or ctx ends.
func (q *PyQueue[T]) Get(ctx context.Context) (T, error) {
	var v T
	err := q.sliced(ctx, &v, "get", nil, ErrEmpty)
	return v, err
}

// GetNowait removes and returns an item, or fails with an error matching
// ErrEmpty.
func (q *PyQueue[T]) GetNowait(ctx context.Context) (T, error) {
	return pyCallAs[T](ctx, q.obj, "get_nowait")
}

// Qsize returns the approximate number of items.
func (q *PyQueue[T]) Qsize(ctx context.Context) (int, error) {
	return pyCallAs[int](ctx, q.obj, "qsize")
}

// Release drops the proxy's reference.
func (q *PyQueue[T]) Release(ctx context.Context) error { return q.obj.Release(ctx) }

// NewPyJoinableQueue creates a queue whose consumers mark items done
// (manager.JoinableQueue(maxsize)).
func NewPyJoinableQueue[T any](ctx context.Context, c *PyClient, maxsize int) (*PyQueue[T], error) {
	o, err := c.Create(ctx, "JoinableQueue", maxsize)
	if err != nil {
		return nil, err
	}
	return &PyQueue[T]{o}, nil
}

// TaskDone marks one item got as processed; called more often than items
// were put, it fails with an error matching ErrOverRelease.
func (q *PyQueue[T]) TaskDone(ctx context.Context) error {
	return pyLockError(pyCallNone(ctx, q.obj, "task_done"))
}

// Join waits until every item put has been marked done, or ctx ends.
// CPython's join takes no timeout, so a Join cut short by ctx closes the
// connection it waited on (nothing is lost: join changes nothing).
func (q *PyQueue[T]) Join(ctx context.Context) error { return pyCallNone(ctx, q.obj, "join") }
