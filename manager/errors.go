// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"errors"
	"fmt"
	"strings"

	commonv1 "github.com/multiproc/multiproc/proto/common/v1"
)

// Sentinel errors. An error raised in the server reaches the caller as a
// *RemoteError that matches the sentinel of its kind with errors.Is.
var (
	// ErrClosed is returned by every call on a closed Client or Server, or
	// through a proxy whose connection is gone.
	ErrClosed = errors.New("manager: closed")
	// ErrReleased is returned by calls through a proxy after Release.
	ErrReleased = errors.New("manager: proxy released")
	// ErrKeyNotFound is Python's KeyError: a missing dict key or
	// namespace attribute.
	ErrKeyNotFound = errors.New("manager: key not found")
	// ErrIndexOutOfRange is Python's IndexError.
	ErrIndexOutOfRange = errors.New("manager: index out of range")
	// ErrNotFound is Python's ValueError from list.remove/list.index.
	ErrNotFound = errors.New("manager: value not found")
	// ErrEmpty is queue.Empty: a non-blocking get on an empty queue.
	ErrEmpty = errors.New("manager: queue is empty")
	// ErrFull is queue.Full: a non-blocking put on a full queue.
	ErrFull = errors.New("manager: queue is full")
	// ErrNotOwner is returned when releasing a lock that is not held (or
	// an RLock held by someone else), or waiting on or notifying a
	// Condition without holding its lock (Python's RuntimeError).
	ErrNotOwner = errors.New("manager: lock not held by the caller")
	// ErrOwnerDead is returned by an acquire that took a lock whose
	// previous holder's connection dropped while holding it. The caller
	// holds the lock; the state it protects may be inconsistent.
	ErrOwnerDead = errors.New("manager: previous lock holder died")
	// ErrReleasedTooManyTimes is a BoundedSemaphore released above its
	// initial value, or a JoinableQueue's TaskDone called too often
	// (Python's ValueError).
	ErrReleasedTooManyTimes = errors.New("manager: released too many times")
	// ErrBrokenBarrier is threading.BrokenBarrierError.
	ErrBrokenBarrier = errors.New("manager: barrier is broken")
	// ErrUnknownType is a create of a type the server has not registered.
	ErrUnknownType = errors.New("manager: unknown type")
	// ErrUnknownMethod is a call of a method the object does not expose.
	ErrUnknownMethod = errors.New("manager: unknown method")
	// ErrUnknownObject is a reference to an object the server does not
	// hold (never created, or already freed).
	ErrUnknownObject = errors.New("manager: unknown object")
	// ErrBadArgs is a call with the wrong number or types of arguments.
	ErrBadArgs = errors.New("manager: bad arguments")
	// ErrTypeError is Python's TypeError: an operation on a value of the
	// wrong kind (an unhashable key, adding a string to an int, ...).
	ErrTypeError = errors.New("manager: type error")
	// ErrBadRequest is a request the server could not decode or that
	// exceeds a limit.
	ErrBadRequest = errors.New("manager: bad request")
)

// kinds maps a RemoteError kind to its sentinel, both ways.
var kinds = []struct {
	kind string
	err  error
}{
	{"key_not_found", ErrKeyNotFound},
	{"index_out_of_range", ErrIndexOutOfRange},
	{"not_found", ErrNotFound},
	{"empty", ErrEmpty},
	{"full", ErrFull},
	{"not_owner", ErrNotOwner},
	{"owner_dead", ErrOwnerDead},
	{"released_too_many", ErrReleasedTooManyTimes},
	{"broken_barrier", ErrBrokenBarrier},
	{"unknown_type", ErrUnknownType},
	{"unknown_method", ErrUnknownMethod},
	{"unknown_object", ErrUnknownObject},
	{"bad_args", ErrBadArgs},
	{"type_error", ErrTypeError},
	{"bad_request", ErrBadRequest},
	{"closed", ErrClosed},
	{"canceled", context.Canceled},
	{"deadline", context.DeadlineExceeded},
}

// RemoteError is an error raised by the server or by a method of a shared
// object, as the caller receives it. Nothing in it is executed; it matches
// the sentinel of its Kind with errors.Is (e.g. ErrKeyNotFound).
type RemoteError struct {
	// Type names the server-side error's Go type (or the sentinel).
	Type string
	// Message is the server-side err.Error().
	Message string
	// Kind is the machine-readable category ("key_not_found", ...), empty
	// for an error of a user type without a sentinel.
	Kind string
	// Stack is the server goroutine's stack when a method panicked.
	Stack string
}

func (e *RemoteError) Error() string {
	msg := strings.TrimPrefix(e.Message, "manager: ")
	if e.Type == "" || e.Type == e.Kind {
		return "manager: remote: " + msg
	}
	return "manager: remote " + e.Type + ": " + msg
}

// Is matches the sentinel of the error's Kind.
func (e *RemoteError) Is(target error) bool {
	for _, k := range kinds {
		if k.kind == e.Kind && k.err == target {
			return true
		}
	}
	return false
}

func (e *RemoteError) Unwrap() error {
	for _, k := range kinds {
		if k.kind == e.Kind {
			return k.err
		}
	}
	return nil
}

// typeError is ErrTypeError with a message.
type typeError struct{ msg string }

func (e *typeError) Error() string { return "manager: " + e.msg }
func (e *typeError) Unwrap() error { return ErrTypeError }

// errorf wraps a sentinel with detail: errorf(ErrKeyNotFound, "%q", k).
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

// toRemote encodes a server-side error for the wire.
func toRemote(err error, stack string, panicked bool) *commonv1.RemoteError {
	re := &commonv1.RemoteError{Message: err.Error(), Stack: stack, Panicked: panicked}
	var remote *RemoteError
	if errors.As(err, &remote) {
		re.Type, re.Kind = remote.Type, remote.Kind
		re.Message = remote.Message
		return re
	}
	re.Type = fmt.Sprintf("%T", err)
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			re.Kind = k.kind
			re.Type = k.kind
			break
		}
	}
	return re
}

func fromRemote(re *commonv1.RemoteError) error {
	return &RemoteError{Type: re.GetType(), Message: re.GetMessage(), Kind: re.GetKind(), Stack: re.GetStack()}
}
