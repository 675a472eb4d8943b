// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

const (
	hReadable = 1 << iota
	hWritable
	hSocket
	hSame
	hPipeW
	hShm // SharedMemory is on: 8 more bytes hold its threshold
)

// MultiprocHandle describes the Conn so that another process can rebuild
// it with MultiprocAttach (or ConnFromHandle): the files it needs
// (duplicates, owned by the caller, who must close them) and a small
// descriptor. The process package calls it when a Conn is an argument of a
// child. A Conn with buffered unread data cannot be handed over, since the
// bytes would be lost.
//
// The Conn stays usable in this process; usually the parent closes its
// copy after the child has started. A Conn over TLS (TLS) cannot be
// handed over.
func (c *Conn) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	if c.closed.Load() {
		return nil, nil, ErrClosed
	}
	if isTLS(c.r) {
		return nil, nil, errTLSHandle
	}
	c.rmu.Lock()
	unread := c.buffered() > 0 || c.pend != nil || len(c.fdq) > 0
	c.rmu.Unlock()
	if unread {
		return nil, nil, errors.New("ipc: connection has received data not yet read; it cannot be handed to another process")
	}
	var flags byte
	if c.r != nil {
		flags |= hReadable
	}
	if c.w != nil {
		flags |= hWritable
	}
	if c.socket {
		flags |= hSocket
	}
	if c.pipeW {
		flags |= hPipeW
	}
	var ts []transport
	if c.r != nil && c.r == c.w {
		flags |= hSame
		ts = []transport{c.r}
	} else {
		for _, t := range []transport{c.r, c.w} {
			if t != nil {
				ts = append(ts, t)
			}
		}
	}
	for _, t := range ts {
		f, err := dupTransport(t)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, nil, err
		}
		files = append(files, f)
	}
	if c.opts.shm > 0 {
		flags |= hShm
	}
	desc = binary.BigEndian.AppendUint64([]byte{1, flags}, uint64(c.opts.maxFrame))
	if c.opts.shm > 0 {
		desc = binary.BigEndian.AppendUint64(desc, uint64(c.opts.shm))
	}
	return files, desc, nil
}

func dupTransport(t transport) (*os.File, error) {
	raw, err := t.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd, derr := -1, error(nil)
	if err := raw.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("dup", derr)
	}
	return os.NewFile(uintptr(nfd), "ipc-handle"), nil
}

// MultiprocAttach makes the zero Conn c the Conn that MultiprocHandle
// described in another process. It takes ownership of files. The process
// package calls it in a child for a *Conn parameter.
func (c *Conn) MultiprocAttach(files []*os.File, desc []byte) error {
	nc, err := ConnFromHandle(files, desc)
	if err != nil {
		return err
	}
	c.adopt(nc)
	return nil
}

// ConnFromHandle rebuilds a Conn from the files and descriptor that
// MultiprocHandle produced in another process. The Conn takes ownership of
// the files. Options (e.g. UseCodec) apply on top of the description.
func ConnFromHandle(files []*os.File, desc []byte, opts ...Option) (*Conn, error) {
	closeAll := func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}
	wantLen := 10
	if len(desc) >= 2 && desc[1]&hShm != 0 {
		wantLen = 18
	}
	if len(desc) != wantLen || desc[0] != 1 {
		closeAll()
		return nil, fmt.Errorf("ipc: bad connection handle descriptor (%d bytes)", len(desc))
	}
	flags := desc[1]
	maxFrame := int64(binary.BigEndian.Uint64(desc[2:]))
	var shmThreshold int64
	if flags&hShm != 0 {
		shmThreshold = int64(binary.BigEndian.Uint64(desc[10:]))
		if shmThreshold <= 0 {
			closeAll()
			return nil, fmt.Errorf("ipc: bad connection handle descriptor (shared-memory threshold %d)", shmThreshold)
		}
	}
	want := 0
	if flags&hSame != 0 {
		want = 1
	} else {
		if flags&hReadable != 0 {
			want++
		}
		if flags&hWritable != 0 {
			want++
		}
	}
	if want == 0 || len(files) != want {
		closeAll()
		return nil, fmt.Errorf("ipc: connection handle needs %d files, got %d", want, len(files))
	}
	ts := make([]transport, len(files))
	for i, f := range files {
		t, err := transportFromFile(f, flags&hSocket != 0 && (i == 0 || flags&hSame != 0), true)
		if err != nil {
			for _, t := range ts[:i] {
				t.Close()
			}
			for _, f := range files[i+1:] {
				f.Close()
			}
			return nil, err
		}
		ts[i] = t
	}
	var r, w transport
	switch {
	case flags&hSame != 0:
		r, w = ts[0], ts[0]
	case flags&hReadable != 0 && flags&hWritable != 0:
		r, w = ts[0], ts[1]
	case flags&hReadable != 0:
		r = ts[0]
	default:
		w = ts[0]
	}
	base := []Option{MaxFrameSize(maxFrame)}
	if shmThreshold > 0 {
		base = append(base, SharedMemory(shmThreshold))
	}
	opts = append(base, opts...)
	return newConn(r, w, flags&hSocket != 0, flags&hPipeW != 0, opts)
}

// transportFromFile makes f pollable (non-blocking, in the runtime's
// poller) so that receives can be cancelled, and closes f. With adopt
// (ConnFromHandle, whose files no one else holds), a file that already is
// pollable (os.NewFile of a non-blocking descriptor: a pipe end passed to
// a child) is used as it is, made close-on-exec: a duplicate would cost a
// dup, two fcntl, a poller registration, and the original's
// deregistration and close, on the start-up path of every child given a
// Conn. NewConn duplicates, so that a caller's stray Close of the file it
// handed over cannot close the Conn's descriptor.
func transportFromFile(f *os.File, socket, adopt bool) (transport, error) {
	if socket || isSocket(f) {
		return fileUnixConnAny(f)
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	if adopt && f.SetReadDeadline(time.Time{}) == nil { // in the poller already
		var cerr error
		if err := raw.Control(func(fd uintptr) {
			_, cerr = unix.FcntlInt(fd, unix.F_SETFD, unix.FD_CLOEXEC)
		}); err != nil || cerr != nil {
			f.Close()
			return nil, errors.Join(err, os.NewSyscallError("fcntl", cerr))
		}
		return f, nil
	}
	nfd, derr := -1, error(nil)
	raw.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		if derr == nil {
			derr = unix.SetNonblock(nfd, true)
		}
	})
	f.Close()
	if derr != nil {
		if nfd >= 0 {
			unix.Close(nfd)
		}
		return nil, os.NewSyscallError("dup", derr)
	}
	return os.NewFile(uintptr(nfd), "ipc-conn"), nil
}

func fileUnixConnAny(f *os.File) (transport, error) {
	defer f.Close()
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	t, ok := nc.(transport)
	if !ok {
		nc.Close()
		return nil, ErrNotSocket
	}
	return t, nil
}
