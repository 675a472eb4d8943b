// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
	shmPipes bool  // Pipe: keep pipes with SharedMemory (SharedMemoryOverPipes)
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

// SharedMemoryOverPipes makes Pipe with SharedMemory keep a pair of pipes
// (whose round trip is about half a socketpair's) instead of a
// socketpair. Pipes cannot carry descriptors, so a shared-memory frame
// over a pipe locates the segment in the sender (its pid, the
// descriptor's number, the memfd's device and inode) and the receiver
// reopens it through /proc/PID/fd/N: both ends must be processes of one
// user on one host, as a Pipe's ends are. The price: frames in flight
// die with their sender. A sender SIGKILLed after it wrote a frame that
// the receiver has not read yet takes the segment with it, and the
// receiver gets an error for that frame instead of its payload (over a
// socketpair the descriptor travels with the frame and outlives the
// sender). A pool, which runs again what a dead worker held, can afford
// that.
func SharedMemoryOverPipes() Option { return func(o *options) { o.shmPipes = true } }

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
		t, err := transportFromFile(r, false, false)
		if err != nil {
			return nil, err
		}
		return newConn(t, t, true, false, opts)
	}
	var rt, wt transport
	socket, pipeW := false, false
	if r != nil {
		socket = isSocket(r)
		t, err := transportFromFile(r, false, false)
		if err != nil {
			return nil, err
		}
		rt = t
	}
	if w != nil {
		pipeW = isPipe(w)
		t, err := transportFromFile(w, false, false)
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
