// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/pickle"
)

// Typed proxies to CPython's synchronisation objects and small values in
// a manager: PyLock (Lock, RLock, Semaphore, BoundedSemaphore), PyEvent,
// PyValue and PyNamespace.
//
// CPython's manager runs every call of a connection in that connection's
// server thread, and a threading.RLock belongs to the thread that
// acquired it. A PyLock of an RLock therefore makes all its calls on one
// connection of its own, as a CPython thread does; the other objects use
// the client's shared method connections.

// pyPin is a method connection reserved for one object.
type pyPin struct {
	mu   sync.Mutex
	conn *ipc.Conn
}

func (p *pyPin) call(ctx context.Context, c *PyClient, ident, method string, args []any, kwds map[string]any) (any, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		conn, err := c.methodConn(ctx)
		if err != nil {
			return nil, err
		}
		p.conn = conn
	}
	v, err := c.request(ctx, p.conn, ident, method, args, kwds)
	var re *RemoteError
	if err != nil && !errors.As(err, &re) {
		p.conn.Close()
		p.conn = nil
	}
	return v, err
}

// newPin reserves a connection slot that Close will close.
func (c *PyClient) newPin() *pyPin {
	p := &pyPin{}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pins == nil {
		c.pins = make(map[*pyPin]struct{})
	}
	c.pins[p] = struct{}{}
	return p
}

func (c *PyClient) dropPin(p *pyPin) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pins, p)
}

func (p *pyPin) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
}

// pySliced calls a blocking method that takes (blocking=True, timeout) or
// (timeout) and returns a bool, in slices of at most pyWaitSlice, until it
// returns true or ctx ends. The call in flight is never abandoned (see
// PyQueue).
func pySliced(ctx context.Context, o *PyObject, method string, blockingArg bool) error {
	for {
		wait := pyWaitSlice
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, max(time.Until(dl), time.Millisecond))
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait+time.Minute)
		args := []any{wait.Seconds()}
		if blockingArg {
			args = []any{true, wait.Seconds()}
		}
		var ok bool
		err := o.CallInto(cctx, &ok, method, args...)
		cancel()
		if err != nil || ok {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("manager: python %s: %w", method, ctx.Err())
		}
	}
}

// pyLockError maps the errors of a lock's release to the manager's
// sentinels: RuntimeError (not held) to ErrNotHeld, ValueError (a
// BoundedSemaphore released too often) to ErrOverRelease.
func pyLockError(err error) error {
	var exc *pickle.Exception
	if !errors.As(err, &exc) {
		return err
	}
	switch exc.Name {
	case "RuntimeError":
		return fmt.Errorf("%w: %w", ErrNotHeld, err)
	case "ValueError":
		return fmt.Errorf("%w: %w", ErrOverRelease, err)
	}
	return err
}

// ---------------------------------------------------------------- PyLock

// PyLock is a proxy to a Lock, RLock, Semaphore or BoundedSemaphore in a
// CPython manager (AcquirerProxy). Unlike the manager's own locks,
// CPython's are not released when their holder dies.
type PyLock struct{ obj *PyObject }

func newPyLock(ctx context.Context, c *PyClient, typeid string, args ...any) (*PyLock, error) {
	o, err := c.Create(ctx, typeid, args...)
	if err != nil {
		return nil, err
	}
	if typeid == "RLock" {
		o.pin = c.newPin()
	}
	return &PyLock{o}, nil
}

// NewPyLock creates a threading.Lock (manager.Lock()).
func NewPyLock(ctx context.Context, c *PyClient) (*PyLock, error) {
	return newPyLock(ctx, c, "Lock")
}

// NewPyRLock creates a threading.RLock (manager.RLock()): re-entrant for
// this PyLock, which makes its calls on a connection of its own.
func NewPyRLock(ctx context.Context, c *PyClient) (*PyLock, error) {
	return newPyLock(ctx, c, "RLock")
}

// NewPySemaphore creates a threading.Semaphore(value).
func NewPySemaphore(ctx context.Context, c *PyClient, value int) (*PyLock, error) {
	return newPyLock(ctx, c, "Semaphore", value)
}

// NewPyBoundedSemaphore creates a threading.BoundedSemaphore(value).
func NewPyBoundedSemaphore(ctx context.Context, c *PyClient, value int) (*PyLock, error) {
	return newPyLock(ctx, c, "BoundedSemaphore", value)
}

// Object returns the underlying PyObject.
func (l *PyLock) Object() *PyObject { return l.obj }

// Acquire waits until the lock is acquired or ctx ends.
func (l *PyLock) Acquire(ctx context.Context) error { return pySliced(ctx, l.obj, "acquire", true) }

// TryAcquire acquires the lock if it is free and reports whether it did.
func (l *PyLock) TryAcquire(ctx context.Context) (bool, error) {
	var ok bool
	err := l.obj.CallInto(ctx, &ok, "acquire", false)
	return ok, err
}

// Release releases the lock: an error matching ErrNotHeld if it was not
// held (ErrOverRelease for a BoundedSemaphore above its value).
func (l *PyLock) Release(ctx context.Context) error {
	return pyLockError(pyCallNone(ctx, l.obj, "release"))
}

// Free drops the proxy's reference.
func (l *PyLock) Free(ctx context.Context) error { return l.obj.Release(ctx) }

// ---------------------------------------------------------------- PyEvent

// PyEvent is a proxy to a threading.Event in a CPython manager.
type PyEvent struct{ obj *PyObject }

// NewPyEvent creates an Event (manager.Event()).
func NewPyEvent(ctx context.Context, c *PyClient) (*PyEvent, error) {
	o, err := c.Create(ctx, "Event")
	if err != nil {
		return nil, err
	}
	return &PyEvent{o}, nil
}

// Object returns the underlying PyObject.
func (e *PyEvent) Object() *PyObject { return e.obj }

// Set sets the flag, waking every waiter.
func (e *PyEvent) Set(ctx context.Context) error { return pyCallNone(ctx, e.obj, "set") }

// Clear clears the flag.
func (e *PyEvent) Clear(ctx context.Context) error { return pyCallNone(ctx, e.obj, "clear") }

// IsSet reports the flag.
func (e *PyEvent) IsSet(ctx context.Context) (bool, error) {
	return pyCallAs[bool](ctx, e.obj, "is_set")
}

// Wait waits until the flag is set or ctx ends.
func (e *PyEvent) Wait(ctx context.Context) error { return pySliced(ctx, e.obj, "wait", false) }

// Free drops the proxy's reference.
func (e *PyEvent) Free(ctx context.Context) error { return e.obj.Release(ctx) }

// ---------------------------------------------------------------- PyValue

// PyValue is a proxy to a manager.Value(typecode, value) in a CPython
// manager (ValueProxy).
type PyValue[T any] struct{ obj *PyObject }

// NewPyValue creates a Value with a typecode (informational in CPython's
// manager, e.g. "i" or "d") and an initial value.
func NewPyValue[T any](ctx context.Context, c *PyClient, typecode string, v T) (*PyValue[T], error) {
	o, err := c.Create(ctx, "Value", typecode, v)
	if err != nil {
		return nil, err
	}
	return &PyValue[T]{o}, nil
}

// Object returns the underlying PyObject.
func (v *PyValue[T]) Object() *PyObject { return v.obj }

// Get returns the value.
func (v *PyValue[T]) Get(ctx context.Context) (T, error) { return pyCallAs[T](ctx, v.obj, "get") }

// Set sets the value.
func (v *PyValue[T]) Set(ctx context.Context, x T) error { return pyCallNone(ctx, v.obj, "set", x) }

// Release drops the proxy's reference.
func (v *PyValue[T]) Release(ctx context.Context) error { return v.obj.Release(ctx) }

// ---------------------------------------------------------------- PyNamespace

// PyNamespace is a proxy to a Namespace in a CPython manager.
type PyNamespace struct{ obj *PyObject }

// NewPyNamespace creates a Namespace with the given attributes.
func NewPyNamespace(ctx context.Context, c *PyClient, attrs map[string]any) (*PyNamespace, error) {
	o, err := c.CreateKw(ctx, "Namespace", nil, attrs)
	if err != nil {
		return nil, err
	}
	return &PyNamespace{o}, nil
}

// Object returns the underlying PyObject.
func (n *PyNamespace) Object() *PyObject { return n.obj }

// attrError maps AttributeError to ErrKeyNotFound, as the manager's own
// Namespace does.
func attrError(err error) error {
	var exc *pickle.Exception
	if errors.As(err, &exc) && exc.Name == "AttributeError" {
		return fmt.Errorf("%w: %w", ErrKeyNotFound, err)
	}
	return err
}

// Get returns an attribute, or an error matching ErrKeyNotFound.
func (n *PyNamespace) Get(ctx context.Context, name string) (any, error) {
	v, err := n.obj.Call(ctx, "__getattribute__", name)
	return v, attrError(err)
}

// GetInto stores an attribute into out, a non-nil pointer.
func (n *PyNamespace) GetInto(ctx context.Context, name string, out any) error {
	return attrError(n.obj.CallInto(ctx, out, "__getattribute__", name))
}

// Set sets an attribute.
func (n *PyNamespace) Set(ctx context.Context, name string, v any) error {
	return pyCallNone(ctx, n.obj, "__setattr__", name, v)
}

// Delete removes an attribute, or fails with an error matching
// ErrKeyNotFound.
func (n *PyNamespace) Delete(ctx context.Context, name string) error {
	return attrError(pyCallNone(ctx, n.obj, "__delattr__", name))
}

// Release drops the proxy's reference.
func (n *PyNamespace) Release(ctx context.Context) error { return n.obj.Release(ctx) }
