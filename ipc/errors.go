// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by every operation on a closed Conn or Listener.
	ErrClosed = errors.New("ipc: connection is closed")
	// ErrReadOnly is returned when sending on the read end of a simplex Pipe.
	ErrReadOnly = errors.New("ipc: connection is read-only")
	// ErrWriteOnly is returned when receiving on the write end of a simplex Pipe.
	ErrWriteOnly = errors.New("ipc: connection is write-only")
	// ErrTruncated is returned when the peer closed the connection in the
	// middle of a frame (CPython: "got end of file during message").
	ErrTruncated = errors.New("ipc: got end of file during message")
	// ErrBadFrame is returned for a frame header CPython would misread (a
	// negative length other than -1). The connection cannot be read again.
	ErrBadFrame = errors.New("ipc: bad frame header")
	// ErrBroken is returned after an earlier send or receive was cut off in
	// the middle of a frame (by cancellation or a framing error): the stream
	// is no longer aligned on frame boundaries in that direction.
	ErrBroken = errors.New("ipc: connection is broken mid-frame")
	// ErrAuthentication is returned when the authkey handshake fails, on
	// either side ("digest received was wrong" / "digest sent was rejected").
	ErrAuthentication = errors.New("ipc: authentication failed")
	// ErrNotSocket is returned by fd passing on a Conn that is not a unix socket.
	ErrNotSocket = errors.New("ipc: connection is not a unix socket")
)

// FrameTooLargeError reports a frame whose announced size exceeds the
// connection's maximum. No memory of that size was allocated and the body
// was not read, so the connection cannot be read again.
type FrameTooLargeError struct {
	Size int64 // size the peer announced, or the caller tried to send
	Max  int64 // the connection's maximum frame size
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("ipc: frame of %d bytes exceeds the maximum of %d", e.Size, e.Max)
}

// BufferTooShortError is returned by RecvBytesInto when the frame does not
// fit the buffer. Like CPython's BufferTooShort, it still delivers the
// whole message, so nothing is lost.
type BufferTooShortError struct {
	Msg []byte
}

func (e *BufferTooShortError) Error() string {
	return fmt.Sprintf("ipc: buffer too short for a %d-byte message", len(e.Msg))
}
