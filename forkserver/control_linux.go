// SPDX-License-Identifier: Apache-2.0

package forkserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// The warm side of the control socket. The program's side is an ipc.Conn;
// a warm process reads and writes the same frames (ipc's wire format: a
// 4-byte big-endian length, then the payload; a request is far below the
// 2 GiB that would need the long header) on a plain blocking descriptor,
// so that its wait for the request is one recvmsg(2) and nothing of the
// runtime's poller is left to tear down when it becomes the child.

// controlBuf is the read buffer: a request of the usual size (a bootstrap
// message of a few hundred bytes) arrives with one recvmsg; a larger body
// is read straight into its own slice.
const controlBuf = 16 << 10

// controlReader reads frames, and the descriptors passed with them
// (SCM_RIGHTS), from a blocking unix stream socket.
type controlReader struct {
	fd   int
	buf  []byte
	r, w int // buf[r:w] is read and not yet consumed
	oob  []byte
	// fds are the descriptors received so far, close-on-exec, in order;
	// the caller owns them.
	fds []int
}

func newControlReader(fd int) *controlReader {
	return &controlReader{fd: fd, buf: make([]byte, controlBuf), oob: make([]byte, unix.CmsgSpace(maxFilesPerFrame*4))}
}

// errPassedFiles is a control message the reader could not take whole.
var errPassedFiles = errors.New("passed files lost (control message truncated or malformed)")

// read is one recvmsg into p. It returns io.EOF at the end of the stream.
func (c *controlReader) read(p []byte) (int, error) {
	for {
		n, oobn, flags, _, err := unix.Recvmsg(c.fd, p, c.oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		var bad bool
		if oobn > 0 {
			bad = !c.takeRights(c.oob[:oobn])
		}
		switch {
		case err != nil:
			return 0, os.NewSyscallError("recvmsg", err)
		case bad || flags&unix.MSG_CTRUNC != 0:
			return 0, errPassedFiles
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// takeRights appends the descriptors of every SCM_RIGHTS message in oob
// to c.fds; it reports false when oob is malformed.
func (c *controlReader) takeRights(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	ok := true
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			ok = false
			continue
		}
		c.fds = append(c.fds, fds...)
	}
	return ok
}

// full fills p, from what is buffered, then from the socket (straight
// into p when p is at least as large as the buffer). io.EOF means the
// stream ended before the first byte of p, io.ErrUnexpectedEOF after it.
func (c *controlReader) full(p []byte) error {
	got := 0
	for got < len(p) {
		if c.r < c.w {
			k := copy(p[got:], c.buf[c.r:c.w])
			c.r += k
			got += k
			continue
		}
		var n int
		var err error
		if len(p)-got >= len(c.buf) {
			n, err = c.read(p[got:])
			got += n
		} else {
			n, err = c.read(c.buf)
			c.r, c.w = 0, n
		}
		if err != nil {
			if err == io.EOF && got > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// frame returns the next frame's payload; a frame announced larger than
// max is refused before anything is allocated.
func (c *controlReader) frame(max int) ([]byte, error) {
	var hdr [4]byte
	if err := c.full(hdr[:]); err != nil {
		return nil, err
	}
	n := int64(int32(binary.BigEndian.Uint32(hdr[:])))
	if n < 0 || n > int64(max) {
		return nil, fmt.Errorf("frame of %d bytes (the limit is %d)", n, max)
	}
	body := make([]byte, n)
	if err := c.full(body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// writeFrame writes b as one frame on the blocking descriptor fd.
func writeFrame(fd int, b []byte) error {
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	buf = append(buf, b...)
	for len(buf) > 0 {
		n, err := unix.Write(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("write", err)
		}
		buf = buf[n:]
	}
	return nil
}
