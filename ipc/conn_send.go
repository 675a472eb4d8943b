// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The sending side of a Conn: frames (one or several per write), and the write
// loop that waits in the poller or in poll(2).

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
	return c.SendFramesLazy(ctx, frames, nil)
}

// A LazyFrame is a frame of Size bytes that Fill writes when it is sent,
// straight into where it goes: a shared-memory segment when the Conn
// sends frames of that size through shared memory (SharedMemory), a
// buffer otherwise. A large value is then copied once, from its own
// memory into the segment, instead of being encoded into a buffer first.
// Fill must write exactly Size bytes into dst (len(dst) == Size); it runs
// on the sending goroutine, with the Conn's sending side locked, so it
// must not send on the Conn. An error from Fill ends the send with that
// error, the frame unsent and the Conn intact.
type LazyFrame struct {
	// Before is the frame's place among the frames sent with it: before
	// frames[Before] (len(frames) puts it after all of them). LazyFrames
	// come in increasing order of Before; those of equal Before keep
	// their order.
	Before int
	Size   int
	Fill   func(dst []byte) error
}

// SendFramesLazy is SendFrames with lazy frames among the frames (see
// LazyFrame), all sent in order with no other sender's frame between
// them.
func (c *Conn) SendFramesLazy(ctx context.Context, frames [][]byte, lazy []LazyFrame) error {
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
	for i, l := range lazy {
		if l.Size < 0 || int64(l.Size) > c.opts.maxFrame {
			return &FrameTooLargeError{Size: int64(l.Size), Max: c.opts.maxFrame}
		}
		if l.Before < 0 || l.Before > len(frames) || (i > 0 && l.Before < lazy[i-1].Before) {
			return fmt.Errorf("ipc: lazy frame %d placed before frame %d of %d", i, l.Before, len(frames))
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	c.growPipe(total)
	prev := 0
	for _, l := range lazy {
		if err := c.sendFramesLocked(ctx, frames[prev:l.Before]); err != nil {
			return err
		}
		prev = l.Before
		if err := c.sendLazyLocked(ctx, l); err != nil {
			return err
		}
	}
	return c.sendFramesLocked(ctx, frames[prev:])
}

// sendLazyLocked sends one lazy frame. Called with wmu held.
func (c *Conn) sendLazyLocked(ctx context.Context, l LazyFrame) error {
	if c.useShm(l.Size) {
		seg, err := c.acquireSegment(ctx, segHeader+l.Size)
		if err != nil {
			return err
		}
		if err := l.Fill(seg.mem[segHeader : segHeader+l.Size : segHeader+l.Size]); err != nil {
			atomic.StoreUint32(seg.busy(), segFree) // never sent: free again
			return err
		}
		return c.writeShmLocked(ctx, seg, l.Size)
	}
	var b []byte
	if l.Size <= smallFrame {
		b = c.wbuf[:0]
	}
	b = appendHeader(b, l.Size)
	hl := len(b)
	if cap(b)-hl < l.Size {
		nb := make([]byte, hl, hl+l.Size)
		copy(nb, b)
		b = nb
	}
	b = b[:hl+l.Size]
	if err := l.Fill(b[hl : hl+l.Size : hl+l.Size]); err != nil {
		return err
	}
	if l.Size <= smallFrame {
		c.wbuf = b[:0]
	}
	return c.write(ctx, nil, b)
}

// sendFramesLocked writes frames in order, batched. Called with wmu held.
func (c *Conn) sendFramesLocked(ctx context.Context, frames [][]byte) error {
	if len(frames) == 0 {
		return nil
	}
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
