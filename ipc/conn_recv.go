// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/multiproc/multiproc/internal/base/spin"
)

// The receiving side of a Conn: frames, the read buffer, the spin
// before a receive sleeps, and descriptors received with a frame.

// -------------------------------------------------------------- receiving

func (c *Conn) checkRecv() error {
	if c.closed.Load() {
		return ErrClosed
	}
	if c.r == nil {
		return ErrWriteOnly
	}
	return nil
}

// RecvBytes receives one frame. At a clean end of stream (the peer closed
// between frames) it returns io.EOF; if the peer closed in the middle of a
// frame it returns ErrTruncated. Files passed with the frame (SendFiles)
// are closed: use RecvFiles to keep them.
func (c *Conn) RecvBytes(ctx context.Context) ([]byte, error) {
	if err := c.checkRecv(); err != nil {
		return nil, err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	msg, start, err := c.recvFrame(ctx, nil, c.opts.maxFrame)
	if err == nil {
		closeFiles(c.takeFiles(start))
	}
	return msg, err
}

// RecvBytesInto receives one frame into buf and returns its length. If the
// frame does not fit, it returns a *BufferTooShortError that carries the
// whole message: the frame is consumed and nothing is lost. To receive at
// an offset (CPython's recv_bytes_into(buf, offset)), pass buf[offset:].
func (c *Conn) RecvBytesInto(ctx context.Context, buf []byte) (int, error) {
	if err := c.checkRecv(); err != nil {
		return 0, err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	msg, start, err := c.recvFrame(ctx, buf, c.opts.maxFrame)
	if err != nil {
		return 0, err
	}
	closeFiles(c.takeFiles(start))
	if len(msg) > len(buf) {
		return 0, &BufferTooShortError{Msg: msg}
	}
	if len(msg) > 0 && &msg[0] != &buf[0] {
		copy(buf, msg)
	}
	return len(msg), nil
}

// Recv receives one frame and decodes it into v (a pointer) with the
// Conn's codec. A shared-memory frame (SharedMemory) is decoded straight
// from its mapping when the codec is DefaultCodec and v is not a slice of
// bytes; otherwise the codec gets a copy.
func (c *Conn) Recv(ctx context.Context, v any) error {
	if c.opts.shm > 0 {
		return c.recvShmAware(ctx, v)
	}
	b, err := c.RecvBytes(ctx)
	if err != nil {
		return err
	}
	return c.opts.codec.Unmarshal(b, v)
}

// recvLimited receives one frame of at most max bytes (the handshake reads
// with CPython's 256-byte cap).
func (c *Conn) recvLimited(ctx context.Context, max int64) ([]byte, error) {
	if err := c.checkRecv(); err != nil {
		return nil, err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	msg, start, err := c.recvFrame(ctx, nil, min(max, c.opts.maxFrame))
	if err == nil {
		closeFiles(c.takeFiles(start))
	}
	return msg, err
}

// Poll waits until a receive would not block: a frame (or part of one) is
// buffered or readable, or the peer closed. It consumes nothing. It returns
// false and ctx's error when ctx ends first.
func (c *Conn) Poll(ctx context.Context) (bool, error) {
	return c.poll(ctx, false)
}

// Ready reports, without blocking, whether a receive would not block.
func (c *Conn) Ready() bool {
	ok, _ := c.poll(context.Background(), true)
	return ok
}

// Buffered reports, without a system call, whether data already read
// from the transport waits in the Conn: a receive then makes progress
// without reading (it returns at once if a whole frame is buffered). A
// server that answers requests as it reads them uses it to tell a lone
// request (answer now) from a batch (answer the rest first) without
// paying for Ready's poll.
func (c *Conn) Buffered() bool {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.readyLocked()
}

func (c *Conn) poll(ctx context.Context, nonblock bool) (bool, error) {
	if err := c.checkRecv(); err != nil {
		return false, err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.readyLocked() {
		return true, nil
	}
	return c.waitReadable(ctx, nonblock)
}

// waitReadable waits until the transport is readable (or hung up) without
// reading from it, so that a Poll never pulls part of a frame out of a
// pipe that another process reads too. Called with rmu held.
func (c *Conn) waitReadable(ctx context.Context, nonblock bool) (bool, error) {
	kfd := -1
	if !nonblock {
		kfd = c.kickFD()
		if c.closed.Load() {
			return false, ErrClosed
		}
	}
	var stop func() bool
	var fired chan struct{}
	if !nonblock && ctx.Done() != nil {
		if ctx.Err() != nil {
			nonblock = true
		} else {
			fired = make(chan struct{})
			stop = context.AfterFunc(ctx, func() {
				c.r.SetReadDeadline(pastDeadline)
				if kfd >= 0 {
					unix.Write(kfd, kickBytes[:])
				}
				close(fired)
			})
		}
	}
	phase := !nonblock && kfd >= 0 && !c.opts.netpoll
	ready, kicked := false, false
	rerr := c.rraw.Read(func(fd uintptr) bool {
		if phase {
			phase = false
			switch pollIn(int(fd), kfd) {
			case pollReady:
				ready = true
				return true
			case pollKicked:
				kicked = true
				return true
			}
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := pollFDs(pfd, 0)
		ready = n > 0
		return ready || nonblock
	})
	if stop != nil && !stop() {
		<-fired
		c.r.SetReadDeadline(time.Time{})
		if kfd >= 0 {
			var b [8]byte
			unix.Read(kfd, b[:])
		}
		if !ready {
			return false, ctx.Err()
		}
	}
	switch {
	case ready:
		return true, nil
	case kicked:
		return false, ErrClosed
	case rerr != nil:
		if errors.Is(rerr, os.ErrDeadlineExceeded) && ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, c.mapErr(rerr)
	case nonblock && ctx.Err() != nil:
		return false, ctx.Err()
	}
	return false, nil
}

// readyLocked reports whether a receive can make progress without reading
// the transport. Called with rmu held.
func (c *Conn) readyLocked() bool {
	return c.rend > c.rpos || c.pend != nil || c.eof || c.rerr != nil
}

// buffered returns the number of bytes buffered but not yet consumed.
func (c *Conn) buffered() int { return c.rend - c.rpos }

// consumed returns the stream offset of the first byte not yet consumed.
func (c *Conn) consumed() int64 { return c.rstream - int64(c.buffered()) }

// takeFiles returns the files that arrived with the frame that started at
// stream offset start and has just been consumed, and closes files that
// arrived with earlier bytes. The kernel ends a read right after the bytes
// of a sendmsg that carried SCM_RIGHTS, so the last byte of the read that
// brought a batch of files belongs to the frame the sender attached them to.
// Called with rmu held.
func (c *Conn) takeFiles(start int64) []*os.File {
	if len(c.fdq) == 0 {
		return nil
	}
	end := c.consumed()
	var mine []*os.File
	i := 0
	for ; i < len(c.fdq) && c.fdq[i].end <= end; i++ {
		if c.fdq[i].end > start {
			mine = append(mine, c.fdq[i].files...)
		} else {
			closeFiles(c.fdq[i].files)
		}
		c.fdq[i] = fdBatch{}
	}
	c.fdq = c.fdq[i:]
	if len(c.fdq) == 0 {
		c.fdq = nil
	}
	return mine
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// recvFrame returns the next frame's body (in into when it fits, else in a
// new slice) and the stream offset of its header. A frame larger than max
// is refused before anything is allocated. Called with rmu held.
//
// On a Conn over TLS, an end of stream that a TLS or network error caused
// says so: the error still matches io.EOF (or ErrTruncated) with
// errors.Is, and wraps the TLS error too.
func (c *Conn) recvFrame(ctx context.Context, into []byte, max int64) ([]byte, int64, error) {
	msg, start, err := c.recvFrameRaw(ctx, into, max)
	if err != nil && (err == io.EOF || err == ErrTruncated) {
		if e, ok := c.r.(*tlsEnd); ok {
			if terr := e.readErr(); terr != nil {
				err = fmt.Errorf("%w (TLS: %w)", err, terr)
			}
		}
	}
	return msg, start, err
}

func (c *Conn) recvFrameRaw(ctx context.Context, into []byte, max int64) ([]byte, int64, error) {
	msg, sf, start, err := c.recvAny(ctx, into, max)
	if err != nil || sf.f == nil {
		return msg, start, err
	}
	msg, err = c.copyShm(sf, into)
	return msg, start, err
}

// longHeader reports whether the length word h announces an 8-byte length
// after it: -1 (CPython's large frame) or, with SharedMemory, -2.
func (c *Conn) longHeader(h uint32) bool {
	return h == 0xFFFFFFFF || ((h == shmHeader || h == procHeader) && c.opts.shm > 0)
}

// recvAny is recvFrameRaw, except that a shared-memory frame comes back as
// sf (sf.f non-nil, the caller must close it) and not as bytes.
func (c *Conn) recvAny(ctx context.Context, into []byte, max int64) ([]byte, shmFrame, int64, error) {
	var sf shmFrame
	msg, start, err := c.recvRaw(ctx, into, max, &sf)
	return msg, sf, start, err
}

func (c *Conn) recvRaw(ctx context.Context, into []byte, max int64, sf *shmFrame) ([]byte, int64, error) {
	if c.rerr != nil {
		return nil, 0, c.rerr
	}
	if p := c.pend; p != nil {
		if err := c.readBody(ctx, p); err != nil {
			return nil, 0, err
		}
		c.pend = nil
		return p.buf, p.start, nil
	}
	// The header: 4 bytes, or 12 for the large-frame escape.
	need := 4
	for c.buffered() < need {
		if _, err := c.fill(ctx, false); err != nil {
			if err == io.EOF {
				if c.buffered() == 0 {
					return nil, 0, io.EOF
				}
				c.rerr = ErrTruncated
				return nil, 0, c.rerr
			}
			if ctx.Err() == nil && !errors.Is(err, ErrClosed) {
				c.rerr = err
			}
			return nil, 0, err
		}
		if c.buffered() >= 4 && c.longHeader(binary.BigEndian.Uint32(c.rbuf[c.rpos:])) {
			need = 12
		}
	}
	if c.longHeader(binary.BigEndian.Uint32(c.rbuf[c.rpos:])) && c.buffered() < 12 {
		need = 12
		for c.buffered() < need {
			if _, err := c.fill(ctx, false); err != nil {
				if err == io.EOF {
					c.rerr = ErrTruncated
					return nil, 0, c.rerr
				}
				return nil, 0, err
			}
		}
	}
	start := c.consumed()
	n := int64(int32(binary.BigEndian.Uint32(c.rbuf[c.rpos:])))
	hlen := 4
	if n == -1 {
		u := binary.BigEndian.Uint64(c.rbuf[c.rpos+4:])
		if u > 1<<62 {
			c.rerr = &FrameTooLargeError{Size: 1 << 62, Max: max}
			return nil, 0, c.rerr
		}
		n = int64(u)
		hlen = 12
	} else if n == -2 && c.opts.shm > 0 {
		return nil, start, c.recvShmFrame(start, binary.BigEndian.Uint64(c.rbuf[c.rpos+4:]), max, sf)
	} else if n == -3 && c.opts.shm > 0 {
		// Over a pipe: the segment's locator follows the header.
		for c.buffered() < 12+procLocator {
			if _, err := c.fill(ctx, false); err != nil {
				if err == io.EOF {
					c.rerr = ErrTruncated
					return nil, 0, c.rerr
				}
				return nil, 0, err
			}
		}
		return nil, start, c.recvProcFrame(binary.BigEndian.Uint64(c.rbuf[c.rpos+4:]), max, sf)
	} else if n < 0 {
		c.rerr = ErrBadFrame
		return nil, 0, c.rerr
	}
	if n > max {
		c.rerr = &FrameTooLargeError{Size: n, Max: max}
		return nil, 0, c.rerr
	}
	c.rpos += hlen
	var buf []byte
	if int64(cap(into)) >= n {
		buf = into[:n]
	} else {
		buf = make([]byte, n)
	}
	if int64(c.buffered()) >= n {
		copy(buf, c.rbuf[c.rpos:c.rpos+int(n)])
		c.rpos += int(n)
		return buf, start, nil
	}
	p := &pending{buf: buf, start: start}
	p.have = copy(buf, c.rbuf[c.rpos:c.rend])
	c.rpos, c.rend = 0, 0
	if err := c.readBody(ctx, p); err != nil {
		if errors.Is(err, ErrTruncated) || ctx.Err() == nil {
			if !errors.Is(err, ErrClosed) && c.rerr == nil {
				c.rerr = err
			}
			return nil, 0, err
		}
		// Cancelled: keep what was read (in our own memory, never the
		// caller's buffer) so the next receive resumes the frame.
		if len(into) > 0 && &p.buf[0] == &into[0] {
			own := make([]byte, len(p.buf))
			copy(own, p.buf[:p.have])
			p.buf = own
		}
		c.pend = p
		return nil, 0, err
	}
	return p.buf, start, nil
}

// readBody reads the rest of a frame body straight into p.buf.
func (c *Conn) readBody(ctx context.Context, p *pending) error {
	for p.have < len(p.buf) {
		if c.buffered() > 0 {
			k := copy(p.buf[p.have:], c.rbuf[c.rpos:c.rend])
			c.rpos += k
			p.have += k
			continue
		}
		n, err := c.readRaw(ctx, p.buf[p.have:], false)
		p.have += n
		if err != nil {
			if err == io.EOF {
				c.eof = true
				c.rerr = ErrTruncated
				return ErrTruncated
			}
			return err
		}
	}
	return nil
}

var (
	errWouldBlock = errors.New("ipc: would block")
	errKicked     = errors.New("ipc: receive interrupted")
	// kickBytes is the 8-byte value written to the kick eventfd (any
	// non-zero value in either byte order).
	kickBytes = [8]byte{1}
)

// blockingPhase bounds how long a receiver waits in poll(2), on its own
// thread like a blocking read, before it parks in the runtime's netpoller.
// A blocked poll(2) wakes as fast as a blocking read (the netpoller's
// wake-up costs several microseconds per message); parking afterwards
// frees the thread of a receiver that waits long.
const blockingPhase = 50 // milliseconds

// fill reads more bytes into rbuf. Called with rmu held.
func (c *Conn) fill(ctx context.Context, nonblock bool) (int, error) {
	if c.eof {
		return 0, io.EOF
	}
	if c.rbuf == nil {
		c.rbuf = make([]byte, readBufSize)
	}
	if c.rpos == c.rend {
		c.rpos, c.rend = 0, 0
	} else if c.rpos > 0 && len(c.rbuf)-c.rend < 16 {
		c.rend = copy(c.rbuf, c.rbuf[c.rpos:c.rend])
		c.rpos = 0
	}
	n, err := c.readRaw(ctx, c.rbuf[c.rend:], nonblock)
	c.rend += n
	if err == io.EOF {
		c.eof = true
	}
	return n, err
}

// kickFD returns the Conn's kick eventfd, making it on first use, or -1.
// Called with rmu held.
func (c *Conn) kickFD() int { return makeKick(&c.kick) }

// makeKick returns the eventfd stored (plus one) in k, making it on first
// use, or -1. Called with the lock that guards k's direction held.
func makeKick(k *atomic.Int32) int {
	if v := k.Load(); v > 0 {
		return int(v - 1)
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1
	}
	k.Store(int32(fd) + 1)
	return fd
}

// testHookParked, when set by a test, is called when a receiver leaves
// poll(2) for the netpoller.
var testHookParked atomic.Pointer[func()]

type pollResult int

const (
	pollReady pollResult = iota
	pollKicked
	pollTimeout
)

// pollIn waits in poll(2) until fd is readable (or hung up), kfd is
// kicked, or blockingPhase passes.
func pollIn(fd, kfd int) pollResult { return pollFD(fd, kfd, unix.POLLIN) }

// pollFD waits in poll(2) for events on fd, a kick on kfd, or the end of
// blockingPhase.
func pollFD(fd, kfd int, events int16) pollResult {
	pfd := [2]unix.PollFd{{Fd: int32(fd), Events: events}, {Fd: int32(kfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd[:], blockingPhase)
		if err == unix.EINTR {
			continue
		}
		switch {
		case err != nil || n == 0:
			return pollTimeout
		case pfd[1].Revents != 0:
			return pollKicked
		}
		return pollReady
	}
}

// readOp is the state of the read in progress, kept in the Conn (under
// rmu) so that the callback handed to the runtime is bound once and a
// receive allocates nothing.
type readOp struct {
	p        []byte
	n        int
	err      error
	files    []*os.File
	kfd      int
	phase    bool // wait in poll(2) before the netpoller
	nonblock bool
	// pollFirst: the last read drained the descriptor, so the next one
	// probably has to wait: poll before reading (saves a read that would
	// fail with EAGAIN on every message of a ping-pong). A read that
	// fills its buffer (bulk data) turns it off.
	pollFirst bool
	drained   bool
	// spin is the number of read attempts left, each after a
	// sched_yield, before waiting in poll(2); see spinReads.
	spin int
	// skipSpin counts receives that do not spin after a spin that ran
	// out (the peer answers slowly, or not at all for a while).
	skipSpin int
}

// spinReads bounds the yield-and-read attempts a receiver makes before it
// sleeps in poll(2). When the peer answers within a few microseconds (a
// request/response exchange on another CPU), catching the answer this way
// saves two sleep/wake-ups per round trip. sched_yield hands the CPU to
// any runnable task first, so when both processes share one CPU the peer
// runs instead of the spin, and no CPU is burnt waiting. A spin that runs
// out turns spinning off for the next spin.SkipAfterMiss receives. This is
// the one spin that runs on one CPU too (internal/base/spin's package doc
// says why); MULTIPROC_SPIN=off turns it off.
const spinReads = 20

func (c *Conn) doRead(fd uintptr) bool {
	op := &c.rop
	for {
		if op.phase && op.pollFirst && op.spin == 0 {
			switch pollIn(int(fd), op.kfd) {
			case pollKicked:
				op.err = errKicked
				return true
			case pollTimeout:
				op.phase = false
				if h := testHookParked.Load(); h != nil {
					(*h)()
				}
			}
		}
		if c.socket {
			if c.oob == nil {
				c.oob = make([]byte, unix.CmsgSpace(maxFDsPerMessage*4))
			}
			var oobn int
			op.n, oobn, _, _, op.err = unix.Recvmsg(int(fd), op.p, c.oob, unix.MSG_CMSG_CLOEXEC)
			if oobn > 0 {
				op.files = append(op.files, parseRights(c.oob[:oobn])...)
			}
		} else {
			op.n, op.err = unix.Read(int(fd), op.p)
		}
		if op.n < 0 {
			op.n = 0
		}
		switch op.err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if op.phase {
				if op.spin > 0 {
					op.spin--
					if op.spin == 0 {
						op.skipSpin = spin.SkipAfterMiss
					}
					spin.Yield()
				}
				op.pollFirst = true
				continue
			}
			op.drained = !op.nonblock
			return op.nonblock
		}
		op.drained = op.err == nil && op.n < len(op.p)
		return true
	}
}

// readRaw performs one read from the transport, honouring ctx, and
// collects any files passed with the bytes. It returns io.EOF at end of
// stream. Called with rmu held.
//
// A blocking read first waits in poll(2) on the descriptor and the kick
// eventfd (so that Close and cancellation can wake it), then, after
// blockingPhase, in the runtime's netpoller with a read deadline for
// cancellation.
func (c *Conn) readRaw(ctx context.Context, p []byte, nonblock bool) (int, error) {
	kfd := -1
	if !nonblock {
		kfd = c.kickFD()
		if c.closed.Load() {
			return 0, ErrClosed
		}
	}
	var stop func() bool
	var fired chan struct{}
	if !nonblock && ctx.Done() != nil {
		if ctx.Err() != nil {
			nonblock = true
		} else {
			fired = make(chan struct{})
			stop = context.AfterFunc(ctx, func() {
				c.r.SetReadDeadline(pastDeadline)
				if kfd >= 0 {
					unix.Write(kfd, kickBytes[:])
				}
				close(fired)
			})
		}
	}
	op := &c.rop
	op.p, op.n, op.err, op.kfd = p, 0, nil, kfd
	op.nonblock, op.phase = nonblock, !nonblock && kfd >= 0 && !c.opts.netpoll
	op.drained = false
	if !op.phase {
		op.pollFirst = false
	}
	op.spin = 0
	if op.phase && op.pollFirst {
		if op.skipSpin > 0 {
			op.skipSpin--
		} else if !spin.Disabled() {
			op.spin = spinReads
		}
	}
	rerr := c.rraw.Read(c.rfn)
	n, err := op.n, op.err
	op.p, op.pollFirst, op.spin = nil, op.drained, 0
	if rerr != nil {
		err = rerr
	}
	c.rstream += int64(n)
	if len(op.files) > 0 {
		c.fdq = append(c.fdq, fdBatch{end: c.rstream, files: op.files})
		op.files = nil
	}
	if stop != nil && !stop() {
		<-fired
		c.r.SetReadDeadline(time.Time{})
		if kfd >= 0 {
			var b [8]byte
			unix.Read(kfd, b[:])
		}
		if err != nil && (err == errKicked || errors.Is(err, os.ErrDeadlineExceeded)) {
			err = ctx.Err()
		}
	}
	switch {
	case err == errKicked:
		return 0, ErrClosed
	case err == unix.EAGAIN:
		if nonblock && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, errWouldBlock
	case err != nil:
		return n, c.mapErr(err)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// parseRights wraps every fd in SCM_RIGHTS control messages in an *os.File
// at once, so none leaks.
func parseRights(oob []byte) []*os.File {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "ipc-received"))
		}
	}
	return files
}
