// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"errors"
	"fmt"
)

var (
	// ErrFull is returned by TryPut on a full queue, and (wrapping the
	// context's error too) by Put when its context ends while the queue
	// stays full: Python's queue.Full.
	ErrFull = errors.New("queue: full")

	// ErrEmpty is returned by TryGet on an empty queue, and (wrapping the
	// context's error too) by Get when its context ends while the queue
	// stays empty: Python's queue.Empty.
	ErrEmpty = errors.New("queue: empty")

	// ErrClosed is returned by every method of a handle after its Close
	// (Python's ValueError "Queue is closed").
	ErrClosed = errors.New("queue: closed")

	// ErrTaskDone is returned by JoinableQueue.TaskDone called more times
	// than items were put (Python's "task_done() called too many times").
	ErrTaskDone = errors.New("queue: TaskDone called too many times")

	// ErrBadHandle is returned by MultiprocAttach for a descriptor or
	// memory that does not hold a queue of the expected kind.
	ErrBadHandle = errors.New("queue: bad handle")
)

// ItemTooLargeError is returned by Put when an encoded item is larger than
// the queue's MaxItemSize.
type ItemTooLargeError struct {
	Size int64 // encoded size of the item
	Max  int64 // the queue's limit
}

func (e *ItemTooLargeError) Error() string {
	return fmt.Sprintf("queue: encoded item of %d bytes exceeds the limit of %d bytes", e.Size, e.Max)
}

// DecodeError is returned by Get when an item cannot be decoded into the
// receiving type. The item has been taken off the queue.
type DecodeError struct {
	Err error
}

func (e *DecodeError) Error() string { return "queue: decode item: " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }
