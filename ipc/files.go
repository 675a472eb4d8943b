// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// SendFiles sends payload as one frame and passes files with it
// (SCM_RIGHTS), so that the peer's RecvFiles returns duplicates of them
// together with payload. The Conn must write to a unix socket (a Pipe made
// with Socketpair, or a Conn from a unix Listener or Dial), else it returns
// ErrNotSocket. The caller keeps ownership of files; they may be closed as
// soon as SendFiles returns. At most 253 files go with one frame (the
// kernel's SCM_MAX_FD).
//
// SendFiles is safe to call concurrently with other sends: the frame and
// its files are never interleaved with another frame.
func (c *Conn) SendFiles(ctx context.Context, payload []byte, files ...*os.File) error {
	if err := c.checkSend(len(payload)); err != nil {
		return err
	}
	if !c.wsocket {
		return ErrNotSocket
	}
	if len(files) > maxFDsPerMessage {
		return fmt.Errorf("ipc: SendFiles: %d files exceed the limit of %d per frame", len(files), maxFDsPerMessage)
	}
	for _, f := range files {
		if f == nil {
			return fmt.Errorf("ipc: SendFiles: nil file")
		}
	}
	// Each file's descriptor is sent from inside its Control callback,
	// where it is guaranteed to stay open (a concurrent Close waits, or
	// leaves it to the last reference), rather than from a duplicate: two
	// system calls less per file (Fd() would make it blocking).
	return withFDs(files, make([]int, 0, len(files)), func(fds []int) error {
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if c.werr != nil {
			return c.werr
		}
		if len(payload) <= smallFrame {
			c.wbuf = append(appendHeader(c.wbuf[:0], len(payload)), payload...)
			return c.write(ctx, oob, c.wbuf)
		}
		var hdr [12]byte
		return c.write(ctx, oob, appendHeader(hdr[:0], len(payload)), payload)
	})
}

// withFDs calls f with the descriptors of files (after fds), each held
// open by its file's Control callback until f returns.
func withFDs(files []*os.File, fds []int, f func([]int) error) error {
	if len(files) == 0 {
		return f(fds)
	}
	raw, err := files[0].SyscallConn()
	if err != nil {
		return fmt.Errorf("ipc: SendFiles: %w", err)
	}
	ferr := error(nil)
	if err := raw.Control(func(fd uintptr) { ferr = withFDs(files[1:], append(fds, int(fd)), f) }); err != nil {
		return fmt.Errorf("ipc: SendFiles: %w", err)
	}
	return ferr
}

// RecvFiles receives one frame and the files that were passed with it by
// SendFiles (none for a frame sent with SendBytes). The caller owns the
// returned files and must close them. The Conn must read from a unix
// socket, else it returns ErrNotSocket.
//
// Every received descriptor is wrapped in an *os.File as soon as it
// arrives: files that come with frames read by RecvBytes, RecvBytesInto or
// Recv are closed, and Close closes files not yet collected, so none leaks.
func (c *Conn) RecvFiles(ctx context.Context) (payload []byte, files []*os.File, err error) {
	if err := c.checkRecv(); err != nil {
		return nil, nil, err
	}
	if !c.socket {
		return nil, nil, ErrNotSocket
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	msg, start, err := c.recvFrame(ctx, nil, c.opts.maxFrame)
	if err != nil {
		return nil, nil, err
	}
	return msg, c.takeFiles(start), nil
}
