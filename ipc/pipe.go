// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Pipe returns a connected pair of Conns, like CPython's Pipe(duplex).
//
// A duplex pair can send and receive at both ends. It is made of two pipes,
// which carry small messages faster than a socketpair; a pipe is grown to
// 1 MiB (F_SETPIPE_SZ) the first time a large frame goes through it. Pass
// Socketpair() for a unix socketpair instead, which SendFiles needs (and
// which SharedMemory implies, unless SharedMemoryOverPipes).
//
// A simplex pair (duplex false) returns (reader, writer): the reader only
// receives (sending on it is ErrReadOnly) and the writer only sends.
func Pipe(duplex bool, opts ...Option) (*Conn, *Conn, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	if o.socket || (o.shm > 0 && !o.shmPipes) {
		a, b, err := socketpair()
		if err != nil {
			return nil, nil, err
		}
		if !duplex {
			c1, _ := newConn(a, nil, true, false, opts)
			c2, _ := newConn(nil, b, false, false, opts)
			return c1, c2, nil
		}
		c1, _ := newConn(a, a, true, false, opts)
		c2, _ := newConn(b, b, true, false, opts)
		return c1, c2, nil
	}
	r1, w1, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	if !duplex {
		c1, _ := newConn(r1, nil, false, false, opts)
		c2, _ := newConn(nil, w1, false, true, opts)
		return c1, c2, nil
	}
	r2, w2, err := os.Pipe()
	if err != nil {
		r1.Close()
		w1.Close()
		return nil, nil, err
	}
	c1, _ := newConn(r1, w2, false, true, opts)
	c2, _ := newConn(r2, w1, false, true, opts)
	return c1, c2, nil
}

// sockBuf is the send buffer asked for a socketpair's ends.
const sockBuf = 1 << 20

// socketpair returns two connected unix stream sockets as net.Conns.
func socketpair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	for _, fd := range fds {
		// Best effort (capped by net.core.wmem_max): a larger send buffer
		// halves the wake-ups per megabyte of a bulk transfer.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sockBuf)
	}
	a, err := fileUnixConn(os.NewFile(uintptr(fds[0]), "socketpair"))
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	b, err := fileUnixConn(os.NewFile(uintptr(fds[1]), "socketpair"))
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// fileUnixConn turns a unix socket file into a *net.UnixConn and closes f.
func fileUnixConn(f *os.File) (*net.UnixConn, error) {
	defer f.Close()
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, ErrNotSocket
	}
	return uc, nil
}
