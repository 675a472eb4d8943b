// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"errors"
	"fmt"
	"strings"

	"github.com/multiproc/multiproc/ipc/remote"
	commonv1 "github.com/multiproc/multiproc/proto/common/v1"
	"github.com/multiproc/multiproc/syncprim"
)

// Sentinel errors. An error raised in the server reaches the caller as a
// *RemoteError that matches these sentinels with errors.Is: each is
// registered with ipc/remote.
var (
	// ErrClosed is returned by every call on a closed Client or Server, or
	// through a proxy whose connection is gone.
	ErrClosed = remote.Register(errors.New("manager: closed"))
	// ErrReleased is returned by calls through a proxy after Release.
	ErrReleased = errors.New("manager: proxy released")
	// ErrKeyNotFound is Python's KeyError: a missing dict key or
	// namespace attribute.
	ErrKeyNotFound = remote.Register(errors.New("manager: key not found"))
	// ErrIndexOutOfRange is Python's IndexError.
	ErrIndexOutOfRange = remote.Register(errors.New("manager: index out of range"))
	// ErrNotFound is Python's ValueError from list.remove/list.index.
	ErrNotFound = remote.Register(errors.New("manager: value not found"))
	// ErrEmpty is queue.Empty: a non-blocking get on an empty queue.
	ErrEmpty = remote.Register(errors.New("manager: queue is empty"))
	// ErrFull is queue.Full: a non-blocking put on a full queue.
	ErrFull = remote.Register(errors.New("manager: queue is full"))
	// ErrNotHeld is syncprim.ErrNotHeld, one sentinel for both: releasing
	// a lock that the caller does not hold (or an RLock held by someone
	// else), or waiting on or notifying a Condition without holding its
	// lock (Python's RuntimeError).
	ErrNotHeld = remote.Register(syncprim.ErrNotHeld)
	// ErrOwnerDead is syncprim.ErrOwnerDead: an acquire took a lock whose
	// previous holder's connection dropped while holding it. The caller
	// holds the lock; the state it protects may be inconsistent.
	ErrOwnerDead = remote.Register(syncprim.ErrOwnerDead)
	// ErrOverRelease is syncprim.ErrOverRelease: a BoundedSemaphore
	// released above its initial value, or a JoinableQueue's TaskDone
	// called too often (Python's ValueError).
	ErrOverRelease = remote.Register(syncprim.ErrOverRelease)
	// ErrBrokenBarrier is syncprim.ErrBrokenBarrier
	// (threading.BrokenBarrierError).
	ErrBrokenBarrier = remote.Register(syncprim.ErrBrokenBarrier)
	// ErrUnknownType is a create of a type the server has not registered.
	ErrUnknownType = remote.Register(errors.New("manager: unknown type"))
	// ErrUnknownMethod is a call of a method the object does not expose.
	ErrUnknownMethod = remote.Register(errors.New("manager: unknown method"))
	// ErrUnknownObject is a reference to an object the server does not
	// hold (never created, or already freed).
	ErrUnknownObject = remote.Register(errors.New("manager: unknown object"))
	// ErrBadArgs is a call with the wrong number or types of arguments.
	ErrBadArgs = remote.Register(errors.New("manager: bad arguments"))
	// ErrTypeError is Python's TypeError: an operation on a value of the
	// wrong kind (an unhashable key, adding a string to an int, ...).
	ErrTypeError = remote.Register(errors.New("manager: type error"))
	// ErrNameNotFound is a lookup or Unpublish of a name that is not
	// published.
	ErrNameNotFound = remote.Register(errors.New("manager: name not published"))
	// ErrNameExists is a Publish of a name that is already published.
	ErrNameExists = remote.Register(errors.New("manager: name already published"))
	// ErrBadRequest is a request the server could not decode or that
	// exceeds a limit.
	ErrBadRequest = remote.Register(errors.New("manager: bad request"))
)

// RemoteError is an error raised by the server or by a method of a shared
// object, as the caller receives it: the Report (ipc/remote) of the
// server-side error. Nothing in it is executed. It matches with errors.Is
// the manager's sentinels (ErrKeyNotFound, ...) and every error registered
// with remote.Register or remote.RegisterType that the server-side chain
// held, so a custom method's own sentinels and error types keep their
// identity too.
type RemoteError struct {
	remote.Report
}

func (e *RemoteError) Error() string {
	if msg, ok := strings.CutPrefix(e.Message, "manager: "); ok {
		return "manager: remote: " + msg
	}
	return "manager: remote " + e.Type + ": " + e.Message
}

// typeError is ErrTypeError with a message.
type typeError struct{ msg string }

func (e *typeError) Error() string { return "manager: " + e.msg }
func (e *typeError) Unwrap() error { return ErrTypeError }

// errorf wraps a sentinel with detail: errorf(ErrKeyNotFound, "%q", k).
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

// toRemote encodes a server-side error for the wire; stack is set for a
// method that panicked.
func toRemote(err error, stack string, panicked bool) *commonv1.RemoteError {
	re := remote.Capture(err)
	if panicked {
		re.Stack, re.Panicked = stack, true
	}
	return re
}

func fromRemote(re *commonv1.RemoteError) error {
	return &RemoteError{Report: remote.Decode(re)}
}
