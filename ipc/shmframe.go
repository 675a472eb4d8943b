// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/multiproc/multiproc/internal/base/futex"
	"github.com/multiproc/multiproc/internal/base/valenc"
)

// Large frames through shared memory (PROTOCOL.md, "Shared-memory
// frames"). Between two Go ends that both enabled SharedMemory, a payload
// larger than the threshold is copied once into a segment (a sealed
// anonymous memfd, see shmseg.go) and the segment's descriptor is passed
// with a 12-byte header (FF FF FF FE + the 8-byte length) over the unix
// socket; the receiver copies or decodes from its mapping of the segment
// and marks the segment free for the sender to reuse. A memfd lives only
// as long as some process holds it (a descriptor, a mapping, or a socket
// with it in flight): a SIGKILL at any point frees it with its last
// holder.

// DefaultSharedMemoryThreshold is the threshold SharedMemory(0) uses: a
// payload larger than this goes through shared memory. Measured on the
// development machine (2 cores, heavily loaded; docs/performance.md, "Big
// data"): at 64 KiB the socket is faster, from 256 KiB on shared memory is
// (about 1.5-2x at 1-4 MiB).
const DefaultSharedMemoryThreshold = 256 << 10

// shmHeader is the length word that announces a shared-memory frame. Any
// negative length other than -1 is an error for CPython-compatible
// readers (ErrBadFrame), so a peer that did not enable SharedMemory
// refuses such a frame instead of misreading it.
const shmHeader = 0xFFFFFFFE

// procHeader announces a shared-memory frame on a pipe, which cannot carry
// descriptors (SharedMemoryOverPipes): after the 8-byte length come
// procLocator bytes that locate the segment in the sender (its pid, the
// descriptor's number, the memfd's device and inode), and the receiver
// reopens it through /proc/PID/fd/N, checking that it is that memfd.
const (
	procHeader  = 0xFFFFFFFD
	procLocator = 24
)

// ErrSharedMemoryGone is the error of a shared-memory frame over a pipe
// whose segment the receiver cannot reopen through /proc: its sender has
// exited (or closed the Conn) since it sent the frame, or the receiver may
// not look into the sender's descriptors (another user, another host).
var ErrSharedMemoryGone = errors.New("ipc: the segment of a shared-memory frame over a pipe cannot be reopened through /proc (its sender is gone, or is another user's process)")

// SharedMemory makes the Conn send payloads larger than threshold bytes
// (DefaultSharedMemoryThreshold when threshold <= 0) through an anonymous
// memfd passed with a small frame, and accept such frames. It is a
// multiproc extension: both ends must be Go Conns with SharedMemory set,
// and a CPython peer must never be given a Conn with it (it reads such a
// frame as empty). It takes effect on unix sockets only (a Pipe made with
// Socketpair, a unix Listener or Dial); on pipes and TCP every frame is
// sent inline. A Conn handed to another process (MultiprocHandle) keeps
// the setting.
//
// What the receiver gets does not change: RecvBytes and RecvBytesInto copy
// the payload once out of the mapping, Recv decodes from the mapping
// (DefaultCodec; other codecs get a copy), and RecvShared returns the
// mapping itself.
func SharedMemory(threshold int64) Option {
	return func(o *options) {
		if threshold <= 0 {
			threshold = DefaultSharedMemoryThreshold
		}
		o.shm = threshold
	}
}

// SharedMemoryThreshold returns the Conn's shared-memory threshold, 0 when
// SharedMemory is not set.
func (c *Conn) SharedMemoryThreshold() int64 { return c.opts.shm }

// useShm reports whether a payload of n bytes goes through a memfd.
func (c *Conn) useShm(n int) bool {
	return c.opts.shm > 0 && int64(n) > c.opts.shm && (c.wsocket || c.pipeW)
}

// sendShm copies b into a segment and sends the segment with a
// shared-memory frame header.
func (c *Conn) sendShm(ctx context.Context, b []byte) error {
	seg, err := c.fillSegment(ctx, b)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeShmLocked(ctx, seg, len(b))
}

// fillSegment copies b into a free segment (marked busy).
func (c *Conn) fillSegment(ctx context.Context, b []byte) (*segment, error) {
	seg, err := c.acquireSegment(ctx, segHeader+len(b))
	if err != nil {
		return nil, err
	}
	copy(seg.mem[segHeader:], b)
	return seg, nil
}

// writeShmLocked sends the header of a shared-memory frame of n bytes
// in seg, with seg's descriptor. Called with wmu held.
func (c *Conn) writeShmLocked(ctx context.Context, seg *segment, n int) error {
	seg.n.Store(int64(n))
	err := c.werr
	if err == nil && c.wsocket {
		var hdr [12]byte
		err = c.write(ctx, unix.UnixRights(seg.fd), appendShmHeader(hdr[:0], n))
	} else if err == nil {
		// A pipe: the segment's locator instead of its descriptor.
		var hdr [12 + procLocator]byte
		b := binary.BigEndian.AppendUint32(hdr[:0], procHeader)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
		b = binary.BigEndian.AppendUint32(b, uint32(os.Getpid()))
		b = binary.BigEndian.AppendUint32(b, uint32(seg.fd))
		b = binary.BigEndian.AppendUint64(b, seg.dev)
		b = binary.BigEndian.AppendUint64(b, seg.ino)
		err = c.write(ctx, nil, b)
	}
	if err != nil {
		atomic.StoreUint32(seg.busy(), segFree) // never sent: free again
	}
	return err
}

func appendShmHeader(b []byte, n int) []byte {
	b = binary.BigEndian.AppendUint32(b, shmHeader)
	return binary.BigEndian.AppendUint64(b, uint64(n))
}

// A shmFrame is a received shared-memory frame: its memfd and size.
type shmFrame struct {
	f *os.File
	n int64
}

// open maps sf's segment (or finds its mapping), closes sf.f, and returns
// the mapping (one reference for the caller) and the payload in it.
func (c *Conn) openShm(sf shmFrame) (*mapping, []byte, error) {
	defer sf.f.Close()
	m, err := c.shmState().mapFrame(sf.f, sf.n)
	if err != nil {
		return nil, nil, err
	}
	return m, m.mem[segHeader : segHeader+sf.n : segHeader+sf.n], nil
}

// done marks the segment of a consumed payload free for its sender and
// drops the caller's reference.
func (m *mapping) done() {
	if !m.handedBack.Swap(false) {
		freeBusy(m.busy())
	}
	m.unref()
}

// freeBusy stores segFree in a segment's busy word, waking a sender that
// sleeps on it.
func freeBusy(w *uint32) {
	if atomic.SwapUint32(w, segFree) == segBusyWaited {
		futex.WakeAll(w)
	}
}

// copyShm copies a shared-memory frame's payload into into (when it has
// room) or a new slice, and frees the segment.
func (c *Conn) copyShm(sf shmFrame, into []byte) ([]byte, error) {
	m, p, err := c.openShm(sf)
	if err != nil {
		return nil, err
	}
	defer m.done()
	var buf []byte
	if cap(into) >= len(p) {
		buf = into[:len(p)]
	} else {
		buf = make([]byte, len(p))
	}
	copy(buf, p)
	return buf, nil
}

// recvShmFrame consumes the header of a shared-memory frame of n bytes
// that started at stream offset start and collects its memfd into sf.
// Called with rmu held.
func (c *Conn) recvShmFrame(start int64, n uint64, max int64, sf *shmFrame) error {
	if n > uint64(max) {
		c.rerr = &FrameTooLargeError{Size: int64(min(n, 1<<62)), Max: max}
		return c.rerr
	}
	c.rpos += 12
	files := c.takeFiles(start)
	if len(files) != 1 {
		closeFiles(files)
		c.rerr = fmt.Errorf("%w: shared-memory frame with %d files, want 1", ErrBadFrame, len(files))
		return c.rerr
	}
	sf.f, sf.n = files[0], int64(n)
	return nil
}

// recvProcFrame consumes a shared-memory frame over a pipe (procHeader)
// of n bytes whose locator is buffered, and reopens its segment into sf.
// Called with rmu held.
func (c *Conn) recvProcFrame(n uint64, max int64, sf *shmFrame) error {
	if n > uint64(max) {
		c.rerr = &FrameTooLargeError{Size: int64(min(n, 1<<62)), Max: max}
		return c.rerr
	}
	loc := c.rbuf[c.rpos+12 : c.rpos+12+procLocator]
	pid := binary.BigEndian.Uint32(loc)
	fd := binary.BigEndian.Uint32(loc[4:])
	dev := binary.BigEndian.Uint64(loc[8:])
	ino := binary.BigEndian.Uint64(loc[16:])
	c.rpos += 12 + procLocator
	if pid == 0 || pid > 1<<22 || fd > 1<<30 {
		c.rerr = fmt.Errorf("%w: shared-memory frame locating pid %d, fd %d", ErrBadFrame, pid, fd)
		return c.rerr
	}
	// Not a terminal to adopt, not an open to block in: only a memfd is
	// accepted, checked before anything is read.
	path := "/proc/" + strconv.FormatUint(uint64(pid), 10) + "/fd/" + strconv.FormatUint(uint64(fd), 10)
	nfd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		// Frames that follow may still be readable: only this one is lost.
		return fmt.Errorf("%w: %w", ErrSharedMemoryGone, os.NewSyscallError("open", err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(nfd, &st); err != nil || st.Dev != dev || st.Ino != ino {
		unix.Close(nfd)
		if err == nil {
			// The number now names another file: the sender closed the
			// segment (it exited, or its Conn closed) after sending.
			return fmt.Errorf("%w: the descriptor names another file", ErrSharedMemoryGone)
		}
		c.rerr = fmt.Errorf("ipc: shared-memory frame: %w", os.NewSyscallError("fstat", err))
		return c.rerr
	}
	sf.f, sf.n = os.NewFile(uintptr(nfd), "ipc-shm-frame"), int64(n)
	return nil
}

// recvShmAware is Recv on a Conn with SharedMemory.
func (c *Conn) recvShmAware(ctx context.Context, v any) error {
	msg, sf, err := c.recvMaybeShm(ctx, nil)
	if err != nil {
		return err
	}
	if sf.f == nil {
		return c.opts.codec.Unmarshal(msg, v)
	}
	if _, isDefault := c.opts.codec.(defaultCodec); !isDefault || decodesToBytes(v) {
		b, err := c.copyShm(sf, nil)
		if err != nil {
			return err
		}
		return c.opts.codec.Unmarshal(b, v)
	}
	m, p, err := c.openShm(sf)
	if err != nil {
		return err
	}
	defer m.done()
	// DefaultCodec keeps no reference to data for anything but bytes:
	// protobuf and gob copy what they decode.
	return c.opts.codec.Unmarshal(p, v)
}

// recvMaybeShm receives one frame (an ordinary one into buf when it
// fits), leaving a shared-memory frame mapped by nobody yet (sf.f
// non-nil: the caller must open or close it).
func (c *Conn) recvMaybeShm(ctx context.Context, buf []byte) ([]byte, shmFrame, error) {
	if err := c.checkRecv(); err != nil {
		return nil, shmFrame{}, err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	msg, sf, start, err := c.recvAny(ctx, buf, c.opts.maxFrame)
	if err == nil {
		closeFiles(c.takeFiles(start))
	}
	return msg, sf, err
}

// RecvShared receives one frame like RecvBytesInto, but the payload of a
// shared-memory frame (SharedMemory) comes back in place, in the mapping
// of its segment, with no copy. An ordinary frame goes into buf when it
// fits (into new memory otherwise); buf may be nil.
//
// The caller owns data until it calls release: the sender does not reuse
// the segment before that, and data stays valid after the Conn is closed.
// data must not be written to (a shared-memory payload is read-only: a
// write faults), nor used after release. release may be called more than
// once (only the first call acts); it is nil for an ordinary frame, whose
// data is the caller's own memory. A caller that never calls it keeps the
// segment's memory until the process exits.
func (c *Conn) RecvShared(ctx context.Context, buf []byte) (data []byte, release func(), err error) {
	msg, sf, err := c.recvMaybeShm(ctx, buf)
	if err != nil {
		return nil, nil, err
	}
	if sf.f == nil {
		return msg, nil, nil
	}
	m, p, err := c.openShm(sf)
	if err != nil {
		return nil, nil, err
	}
	var once sync.Once
	return p, func() { once.Do(m.done) }, nil
}

// decodesToBytes reports whether DefaultCodec would hand v the frame's
// bytes themselves (a *[]byte or a pointer to a named slice of bytes).
func decodesToBytes(v any) bool {
	if _, ok := v.(*[]byte); ok {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && !rv.IsNil() && valenc.ClassOf(rv.Type().Elem()) == valenc.Bytes
}
