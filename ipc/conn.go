// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/multiproc/multiproc/internal/base/spin"
)

const (
	// DefaultMaxFrameSize is the largest frame a Conn accepts unless
	// MaxFrameSize says otherwise.
	DefaultMaxFrameSize int64 = 256 << 20
	// smallFrame is CPython's threshold: frames up to this size go out in
	// one write together with their header.
	smallFrame  = 16 << 10
	readBufSize = 64 << 10
	// bigPipe is the size a pipe is grown to (F_SETPIPE_SZ) the first time a
	// frame larger than its default 64 KiB buffer is sent through it.
	bigPipe = 1 << 20
	// maxFDsPerMessage is the kernel's SCM_MAX_FD.
	maxFDsPerMessage = 253
)

var pastDeadline = time.Unix(1, 0)

// An Option configures a Conn.
type Option func(*options)

type options struct {
	maxFrame int64
	codec    Codec
	socket   bool  // Pipe: use a socketpair even where pipes are faster
	netpoll  bool  // wait only in the runtime's netpoller (WaitInNetpoller)
	shm      int64 // SharedMemory's threshold; 0: every frame inline
}

func defaultOptions() options {
	return options{maxFrame: DefaultMaxFrameSize, codec: DefaultCodec}
}

// MaxFrameSize sets the largest frame the Conn sends or accepts. A peer
// that announces a larger frame gets a *FrameTooLargeError and no memory
// of that size is allocated. n <= 0 means DefaultMaxFrameSize.
func MaxFrameSize(n int64) Option {
	return func(o *options) {
		if n <= 0 {
			n = DefaultMaxFrameSize
		}
		o.maxFrame = n
	}
}

// UseCodec sets the codec used by Send and Recv.
func UseCodec(c Codec) Option {
	return func(o *options) {
		if c != nil {
			o.codec = c
		}
	}
}

// WaitInNetpoller makes receivers and senders that must wait park in the
// runtime's netpoller at once, instead of first retrying briefly and then
// blocking their OS thread in poll(2) for up to 50 ms. That wait is the
// fastest way to catch a reply (a few microseconds less per message), but
// it holds a thread per waiting receiver; a server with many connections
// and goroutines (the manager, for one) keeps more throughput with this
// option. Cancellation works the same either way.
func WaitInNetpoller() Option { return func(o *options) { o.netpoll = true } }

// Socketpair makes Pipe use a unix socketpair even for a duplex pipe,
// which is needed to pass open files (SendFiles) over it.
func Socketpair() Option { return func(o *options) { o.socket = true } }

// transport is what a Conn reads from and writes to: an *os.File (pipe or
// socketpair end) or a net.Conn (accepted or dialled socket).
type transport interface {
	SyscallConn() (syscall.RawConn, error)
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	Close() error
}

type fdBatch struct {
	end   int64 // stream offset just past the read that brought the files
	files []*os.File
}

type pending struct {
	buf   []byte // the frame's body, len == frame size
	have  int    // bytes of buf already filled
	start int64  // stream offset of the frame's header
}

// Conn is a framed, bidirectional connection with CPython's wire format:
// every message is one frame, a 4-byte big-endian signed length followed by
// the payload (-1 and an 8-byte length for frames over 2 GiB). A CPython
// multiprocessing.connection peer reads a frame sent with SendBytes with
// recv_bytes() and the other way round.
//
// A Conn is safe for concurrent use: concurrent senders never interleave
// their frames, and concurrent receivers each get whole frames. Every
// blocking method takes a context; cancelling a receive loses nothing (a
// frame cut off by cancellation is resumed by the next receive), while
// cancelling a send in the middle of a frame breaks the sending direction
// (ErrBroken), since the peer has already read part of it.
type Conn struct {
	r, w    transport // nil when not readable / writable; may be equal
	rraw    syscall.RawConn
	wraw    syscall.RawConn
	socket  bool // r is a unix socket: reads collect passed files
	wsocket bool // w is a unix socket: SendFiles works
	pipeW   bool // w is a pipe (may be grown with F_SETPIPE_SZ)
	opts    options

	rmu     sync.Mutex
	rbuf    []byte
	rpos    int
	rend    int
	rstream int64 // stream offset of rbuf[rend]
	eof     bool
	rerr    error
	pend    *pending
	fdq     []fdBatch
	oob     []byte
	// kick is 1 + an eventfd (made on the first blocking receive; 0 until
	// then) that wakes a receiver blocked in poll(2): written by Close and
	// by cancellation.
	kick atomic.Int32

	rop readOp
	rfn func(uintptr) bool // c.doRead, bound once

	wmu   sync.Mutex
	wkick atomic.Int32 // like kick, for a sender blocked in poll(2)
	wop   writeOp
	wfn   func(uintptr) bool // c.doWrite, bound once
	hdr   [12]byte
	wbuf  []byte
	werr  error
	grown bool

	shmOnce sync.Once
	shm     *shmState // SharedMemory's segments, made on first use

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

func newConn(r, w transport, socket, pipeW bool, opts []Option) (*Conn, error) {
	c := new(Conn)
	return c, c.init(r, w, socket, pipeW, opts)
}

// adopt moves a freshly made Conn's state into the zero Conn c.
func (c *Conn) adopt(nc *Conn) {
	c.r, c.w, c.rraw, c.wraw = nc.r, nc.w, nc.rraw, nc.wraw
	c.socket, c.wsocket, c.pipeW, c.opts = nc.socket, nc.wsocket, nc.pipeW, nc.opts
	c.rfn, c.wfn = c.doRead, c.doWrite
}

func (c *Conn) init(r, w transport, socket, pipeW bool, opts []Option) error {
	c.r, c.w, c.socket, c.pipeW, c.opts = r, w, socket, pipeW, defaultOptions()
	c.rfn, c.wfn = c.doRead, c.doWrite
	// Whatever the caller believed, a unix socket is what the transport is.
	_, c.socket = r.(*net.UnixConn)
	_, c.wsocket = w.(*net.UnixConn)
	for _, o := range opts {
		o(&c.opts)
	}
	if r != nil {
		raw, err := r.SyscallConn()
		if err != nil {
			return err
		}
		c.rraw = raw
	}
	if w != nil {
		raw, err := w.SyscallConn()
		if err != nil {
			return err
		}
		c.wraw = raw
	}
	return nil
}

// NewConn makes a Conn from open files: r to read from and w to write to
// (either may be nil for a one-way Conn; both may be the same socket). The
// Conn takes ownership of the files (it works on non-blocking duplicates
// registered with the runtime's poller, so that every wait can be
// cancelled, and closes the originals).
func NewConn(r, w *os.File, opts ...Option) (*Conn, error) {
	if r == nil && w == nil {
		return nil, errors.New("ipc: NewConn needs a file to read or to write")
	}
	if r != nil && r == w {
		t, err := transportFromFile(r, false)
		if err != nil {
			return nil, err
		}
		return newConn(t, t, true, false, opts)
	}
	var rt, wt transport
	socket, pipeW := false, false
	if r != nil {
		socket = isSocket(r)
		t, err := transportFromFile(r, false)
		if err != nil {
			return nil, err
		}
		rt = t
	}
	if w != nil {
		pipeW = isPipe(w)
		t, err := transportFromFile(w, false)
		if err != nil {
			if rt != nil {
				rt.Close()
			}
			return nil, err
		}
		wt = t
	}
	return newConn(rt, wt, socket, pipeW, opts)
}

func fileMode(f *os.File) uint32 {
	var st unix.Stat_t
	raw, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		return 0
	}
	return st.Mode & unix.S_IFMT
}

func isSocket(f *os.File) bool { return fileMode(f) == unix.S_IFSOCK }
func isPipe(f *os.File) bool   { return fileMode(f) == unix.S_IFIFO }

// Readable reports whether the Conn can receive.
func (c *Conn) Readable() bool { return c.r != nil }

// Writable reports whether the Conn can send.
func (c *Conn) Writable() bool { return c.w != nil }

// Closed reports whether Close has been called.
func (c *Conn) Closed() bool { return c.closed.Load() }

// Close closes the Conn. Blocked senders and receivers return ErrClosed.
// Files received with SendFiles that were never collected are closed too.
// Close is idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		// Wake a receiver blocked in poll(2) first: closing the transport
		// waits until no system call uses its descriptor any more.
		if k := c.kick.Load(); k > 0 {
			unix.Write(int(k-1), kickBytes[:])
		}
		if k := c.wkick.Load(); k > 0 {
			unix.Write(int(k-1), kickBytes[:])
		}
		if c.r != nil {
			c.closeErr = c.r.Close()
		}
		if c.w != nil && c.w != c.r {
			if err := c.w.Close(); c.closeErr == nil {
				c.closeErr = err
			}
		}
		c.rmu.Lock()
		for _, b := range c.fdq {
			for _, f := range b.files {
				f.Close()
			}
		}
		c.fdq = nil
		if k := c.kick.Swap(0); k > 0 {
			unix.Close(int(k - 1))
		}
		c.rmu.Unlock()
		c.wmu.Lock()
		if k := c.wkick.Swap(0); k > 0 {
			unix.Close(int(k - 1))
		}
		c.wmu.Unlock()
		c.shmOnce.Do(func() {}) // no state after this
		if c.shm != nil {
			c.shm.close()
		}
	})
	return c.closeErr
}

// ---------------------------------------------------------------- sending

func appendHeader(b []byte, n int) []byte {
	if int64(n) > 0x7FFFFFFF {
		b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF)
		return binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

func (c *Conn) checkSend(sizes ...int) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if c.w == nil {
		return ErrReadOnly
	}
	for _, n := range sizes {
		if int64(n) > c.opts.maxFrame {
			return &FrameTooLargeError{Size: int64(n), Max: c.opts.maxFrame}
		}
	}
	return nil
}

// SendBytes sends b as one frame. An empty b is a legal, empty frame.
func (c *Conn) SendBytes(ctx context.Context, b []byte) error {
	if err := c.checkSend(len(b)); err != nil {
		return err
	}
	if c.useShm(len(b)) {
		return c.sendShm(ctx, b)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if len(b) <= smallFrame {
		c.wbuf = append(appendHeader(c.wbuf[:0], len(b)), b...)
		return c.write(ctx, nil, c.wbuf)
	}
	c.growPipe(len(b))
	return c.write(ctx, nil, appendHeader(c.hdr[:0], len(b)), b)
}

// SendFrames sends several frames at once, in order, with as few system
// calls as their sizes allow; no other sender's frame comes between them.
// With SharedMemory, frames over the threshold go through shared memory.
// Queues and pools use it to batch small messages.
func (c *Conn) SendFrames(ctx context.Context, frames ...[]byte) error {
	if err := c.checkSend(); err != nil {
		return err
	}
	total := 0
	for _, f := range frames {
		if int64(len(f)) > c.opts.maxFrame {
			return &FrameTooLargeError{Size: int64(len(f)), Max: c.opts.maxFrame}
		}
		total += len(f) + 12
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	c.growPipe(total)
	buf := c.wbuf[:0]
	// Keep the (possibly grown) buffer for the next call, whatever happens.
	defer func() { c.wbuf = buf[:0] }()
	for _, f := range frames {
		if c.useShm(len(f)) {
			// In order: what is batched so far, then this frame.
			if len(buf) > 0 {
				if err := c.write(ctx, nil, buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
			seg, err := c.fillSegment(ctx, f)
			if err != nil {
				return err
			}
			if err := c.writeShmLocked(ctx, seg, len(f)); err != nil {
				return err
			}
			continue
		}
		buf = appendHeader(buf, len(f))
		if len(f) > readBufSize {
			if err := c.write(ctx, nil, buf, f); err != nil {
				return err
			}
			buf = buf[:0]
			continue
		}
		buf = append(buf, f...)
	}
	if len(buf) > 0 {
		return c.write(ctx, nil, buf)
	}
	return nil
}

// Send encodes v with the Conn's codec and sends it as one frame.
func (c *Conn) Send(ctx context.Context, v any) error {
	b, err := c.opts.codec.Marshal(v)
	if err != nil {
		return err
	}
	return c.SendBytes(ctx, b)
}

func (c *Conn) growPipe(n int) {
	if !c.pipeW || c.grown || n <= 64<<10 {
		return
	}
	c.grown = true
	c.wraw.Control(func(fd uintptr) {
		// Best effort: an unprivileged user past pipe-user-pages-soft keeps
		// the default size, which is slower but correct.
		unix.FcntlInt(fd, unix.F_SETPIPE_SZ, bigPipe)
	})
}

// writeOp is the state of the write in progress, kept in the Conn (under
// wmu) so that the callback handed to the runtime is bound once and a send
// allocates nothing.
type writeOp struct {
	b     []byte
	oob   []byte
	n     int
	err   error
	kfd   int
	phase bool // wait in poll(2) before the netpoller
}

func (c *Conn) doWrite(fd uintptr) bool {
	op := &c.wop
	for {
		if op.oob != nil {
			op.n, op.err = unix.SendmsgN(int(fd), op.b, op.oob, nil, 0)
		} else {
			op.n, op.err = unix.Write(int(fd), op.b)
		}
		if op.n < 0 {
			op.n = 0
		}
		switch op.err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if op.phase {
				switch pollFD(int(fd), op.kfd, unix.POLLOUT) {
				case pollReady:
					continue
				case pollKicked:
					op.err = errKicked
					return true
				}
				op.phase = false
			}
			return false
		}
		return true
	}
}

// write writes the buffers in order (with oob, SCM_RIGHTS data, on the
// first write), honouring ctx. Called with wmu held.
func (c *Conn) write(ctx context.Context, oob []byte, bufs ...[]byte) error {
	kfd := -1
	if c.wsocket {
		kfd = makeKick(&c.wkick)
		if c.closed.Load() {
			return ErrClosed
		}
	}
	var stop func() bool
	var fired chan struct{}
	if ctx.Done() != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		fired = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			c.w.SetWriteDeadline(pastDeadline)
			if kfd >= 0 {
				unix.Write(kfd, kickBytes[:])
			}
			close(fired)
		})
	}
	wrote := false
	var werr error
	op := &c.wop
	for _, b := range bufs {
		off := 0
		for off < len(b) || (oob != nil && len(b) == 0) {
			op.b, op.oob, op.n, op.err = b[off:], oob, 0, nil
			// A socket reports POLLOUT once half its buffer is free; a
			// full pipe reports it for every page a reader frees, and
			// poll(2) round trips then cost more than the netpoller.
			op.kfd, op.phase = kfd, kfd >= 0 && c.wsocket && !c.opts.netpoll
			if rerr := c.wraw.Write(c.wfn); rerr != nil {
				op.err = rerr
			}
			if op.err != nil {
				werr = op.err
				break
			}
			oob = nil
			off += op.n
			wrote = wrote || op.n > 0
		}
		if werr != nil {
			break
		}
	}
	op.b, op.oob = nil, nil
	if stop != nil && !stop() {
		<-fired
		c.w.SetWriteDeadline(time.Time{})
		if kfd >= 0 {
			var b [8]byte
			unix.Read(kfd, b[:])
		}
		if werr != nil && (werr == errKicked || errors.Is(werr, os.ErrDeadlineExceeded)) {
			werr = ctx.Err()
		}
	}
	if werr == errKicked {
		werr = ErrClosed
	}
	if werr != nil {
		werr = c.mapErr(werr)
		if wrote {
			c.werr = ErrBroken
			return errors.Join(ErrBroken, werr)
		}
		return werr
	}
	return nil
}

func (c *Conn) mapErr(err error) error {
	if c.closed.Load() || errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
		return ErrClosed
	}
	return err
}

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
	return h == 0xFFFFFFFF || (h == shmHeader && c.opts.shm > 0)
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
