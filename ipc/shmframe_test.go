// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/multiproc/multiproc/internal/mptest"
)

// pattern returns n bytes that differ from one offset to the next and from
// one seed to the next.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ byte(i>>8) ^ seed
	}
	return b
}

// frameMappings counts this process's mappings of shared-memory frames.
func frameMappings(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "multiproc-ipc-frame")
}

func shmPipe(t *testing.T, threshold int64, opts ...Option) (*Conn, *Conn) {
	t.Helper()
	a, b, err := Pipe(true, append([]Option{SharedMemory(threshold)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestSharedMemoryEdges sends payloads around the threshold from a Conn
// with SharedMemory to one without: a payload of exactly the threshold is
// an ordinary frame, one byte more is a shared-memory frame, which a Conn
// without the option refuses as a bad frame (as CPython would misread it).
func TestSharedMemoryEdges(t *testing.T) {
	mptest.CheckFDs(t)
	const th = 4096
	tests := []struct {
		name    string
		size    int
		wantShm bool
	}{
		{"empty", 0, false},
		{"one", 1, false},
		{"below", th - 1, false},
		{"at", th, false},
		{"over", th + 1, true},
		{"large", 3*th + 7, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, err := Pipe(true, Socketpair())
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			// Only the sender has the option: what arrives shows the path.
			s, err := ConnFromHandleOf(t, a, SharedMemory(th))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := ctxTimeout(t)
			want := pattern(tt.size, 1)
			if err := s.SendBytes(ctx, want); err != nil {
				t.Fatal(err)
			}
			got, err := b.RecvBytes(ctx)
			if tt.wantShm {
				if !errors.Is(err, ErrBadFrame) {
					t.Fatalf("a shared-memory frame to a Conn without SharedMemory: got %v, want ErrBadFrame", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("payload of %d bytes changed", tt.size)
			}
		})
	}
}

// ConnFromHandleOf rebuilds c's far end in this process with extra
// options (the way a child would), and closes c.
func ConnFromHandleOf(t *testing.T, c *Conn, opts ...Option) (*Conn, error) {
	t.Helper()
	files, desc, err := c.MultiprocHandle()
	c.Close()
	if err != nil {
		return nil, err
	}
	return ConnFromHandle(files, desc, opts...)
}

// TestSharedMemoryRoundTrip: bytes in = bytes out on every receive path,
// at and around the threshold, and nothing stays mapped or open.
func TestSharedMemoryRoundTrip(t *testing.T) {
	mptest.CheckFDs(t)
	const th = 4096
	a, b := shmPipe(t, th)
	ctx := ctxTimeout(t)
	for _, n := range []int{0, 1, th - 1, th, th + 1, 1 << 20, 5<<20 + 3} {
		want := pattern(n, byte(n))
		// RecvBytes
		if err := a.SendBytes(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := b.RecvBytes(ctx)
		if err != nil {
			t.Fatalf("%d bytes: RecvBytes: %v", n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: RecvBytes changed the payload", n)
		}
		// RecvBytesInto, exact and too short
		if err := a.SendBytes(ctx, want); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, n+5)
		k, err := b.RecvBytesInto(ctx, buf)
		if err != nil || !bytes.Equal(buf[:k], want) {
			t.Fatalf("%d bytes: RecvBytesInto: %d, %v", n, k, err)
		}
		if n > 0 {
			if err := a.SendBytes(ctx, want); err != nil {
				t.Fatal(err)
			}
			_, err = b.RecvBytesInto(ctx, make([]byte, n-1))
			var bt *BufferTooShortError
			if !errors.As(err, &bt) || !bytes.Equal(bt.Msg, want) {
				t.Fatalf("%d bytes into %d: got %v, want a BufferTooShortError with the message", n, n-1, err)
			}
		}
		// Recv into *[]byte (the bytes are copied out of the mapping)
		if err := a.Send(ctx, want); err != nil {
			t.Fatal(err)
		}
		var gotB []byte
		if err := b.Recv(ctx, &gotB); err != nil || !bytes.Equal(gotB, want) {
			t.Fatalf("%d bytes: Recv: %v", n, err)
		}
		// RecvShared
		if err := b.SendBytes(ctx, want); err != nil {
			t.Fatal(err)
		}
		m, release, err := a.RecvShared(ctx, nil)
		if err != nil || !bytes.Equal(m, want) {
			t.Fatalf("%d bytes: RecvShared: %v", n, err)
		}
		if (release != nil) != (n > th) {
			t.Fatalf("%d bytes: RecvShared's release is set: %v, want %v", n, release != nil, n > th)
		}
		if release != nil {
			release()
			release()
		}
		// RecvShared with a buffer: an ordinary frame lands in it.
		if err := b.SendBytes(ctx, want); err != nil {
			t.Fatal(err)
		}
		buf2 := make([]byte, n+1)
		m, release, err = a.RecvShared(ctx, buf2)
		if err != nil || !bytes.Equal(m, want) {
			t.Fatalf("%d bytes: RecvShared into a buffer: %v", n, err)
		}
		if inBuf := n > 0 && &m[0] == &buf2[0]; n > 0 && inBuf != (n <= th) {
			t.Fatalf("%d bytes: RecvShared used the buffer: %v, want %v", n, inBuf, n <= th)
		}
		if release != nil {
			release()
		}
	}
	// The segments stay mapped for reuse (at most sendSegs + recvMaps per
	// Conn) until Close; a RecvShared slice outlives Close until released.
	if k := frameMappings(t); k == 0 || k > 2*(sendSegs+recvMaps) {
		t.Fatalf("%d segments mapped, want 1 to %d", k, 2*(sendSegs+recvMaps))
	}
	want := pattern(2*th, 42)
	if err := a.SendBytes(ctx, want); err != nil {
		t.Fatal(err)
	}
	m, release, err := b.RecvShared(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	if !bytes.Equal(m, want) {
		t.Fatal("a RecvShared slice changed when the Conns were closed")
	}
	if k := frameMappings(t); k != 1 {
		t.Fatalf("after Close with one RecvShared slice held: %d segments mapped, want 1", k)
	}
	release()
	if k := frameMappings(t); k != 0 {
		t.Fatalf("after Close and release: %d segments still mapped", k)
	}
}

// TestSharedMemoryReuse: a sender reuses a segment once the receiver has
// consumed its payload, and a receiver holding a RecvShared slice keeps
// its segment from being overwritten.
func TestSharedMemoryReuse(t *testing.T) {
	mptest.CheckFDs(t)
	const th = 4096
	a, b := shmPipe(t, th)
	ctx := ctxTimeout(t)
	first := pattern(3*th, 1)
	if err := a.SendBytes(ctx, first); err != nil {
		t.Fatal(err)
	}
	held, release, err := b.RecvShared(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		want := pattern(3*th, byte(i+2))
		if err := a.SendBytes(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := b.RecvBytes(ctx)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if !bytes.Equal(held, first) {
		t.Fatal("a segment held by RecvShared was reused")
	}
	release()
	// One segment held, one reused 20 times: two senders' segments, and
	// the receiver's mappings of the same two.
	if k := frameMappings(t); k != 4 {
		t.Fatalf("%d segments mapped, want 4 (2 sending, 2 received)", k)
	}
}

type bigRecord struct {
	Name    string
	Ints    []int64
	Floats  []float64
	Chunks  [][]byte
	ByKey   map[string][]uint16
	Nothing []string
}

// TestSharedMemoryStruct: a struct of slices larger than the threshold is
// decoded from the mapping (gob) and equals what was sent.
func TestSharedMemoryStruct(t *testing.T) {
	mptest.CheckFDs(t)
	a, b := shmPipe(t, 64<<10)
	ctx := ctxTimeout(t)
	want := bigRecord{Name: "big", ByKey: map[string][]uint16{"a": {1, 2, 3}, "b": nil}}
	for i := range 50_000 {
		want.Ints = append(want.Ints, int64(i)*-3)
		want.Floats = append(want.Floats, float64(i)/7)
	}
	for i := range 20 {
		want.Chunks = append(want.Chunks, pattern(10_000+i, byte(i)))
	}
	if err := a.Send(ctx, want); err != nil {
		t.Fatal(err)
	}
	var got bigRecord
	if err := b.Recv(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	a.Close()
	b.Close()
	if k := frameMappings(t); k != 0 {
		t.Fatalf("%d segments still mapped after Close", k)
	}
}

// TestSharedMemoryHandle: the setting travels with a handed-over Conn, and
// a child echoes large frames through shared memory both ways.
func TestSharedMemoryChildEcho(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckChildren(t)
	a, b, err := Pipe(true, SharedMemory(8192))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cmd := startChild(t, "echo", nil, b)
	ctx := ctxTimeout(t)
	for _, n := range []int{8192, 8193, 4 << 20} {
		want := pattern(n, 9)
		if err := a.SendBytes(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := a.RecvBytes(ctx)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: echo: %v", n, err)
		}
	}
	a.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

var _ = mptest.RegisterHelper("shm-flood", func() {
	// Sends large shared-memory frames until killed.
	conns, args := childConns()
	n, _ := strconv.Atoi(args[0])
	b := pattern(n, 3)
	for {
		if err := conns[0].SendBytes(context.Background(), b); err != nil {
			fail(err)
		}
	}
})

var _ = mptest.RegisterHelper("stall", func() {
	// Holds its Conn and reads nothing until killed.
	childConns()
	io.Copy(io.Discard, os.Stdin)
	time.Sleep(time.Hour)
})

// TestSharedMemoryKilledSender: a child SIGKILLed while it sends large
// shared-memory frames leaves this process with whole frames, then the
// end of the stream, and no descriptor or mapping of its memfds.
func TestSharedMemoryKilledSender(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckChildren(t)
	mptest.CheckShm(t)
	const n = 8 << 20
	a, b, err := Pipe(true, SharedMemory(0))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cmd := startChild(t, "shm-flood", []string{strconv.Itoa(n)}, b)
	ctx := ctxTimeout(t)
	want := pattern(n, 3)
	for i := range 3 {
		got, err := a.RecvBytes(ctx)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	for {
		got, err := a.RecvBytes(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after the kill: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("a frame received after the kill changed")
		}
	}
	a.Close()
	if k := frameMappings(t); k != 0 {
		t.Fatalf("%d segments still mapped after Close", k)
	}
}

// TestSharedMemoryKilledReceiver: a sender waiting for a segment that a
// child holds (it received nothing) returns an error when the child is
// SIGKILLed, instead of waiting for ever; frames in flight to it hold no
// descriptor here.
func TestSharedMemoryKilledReceiver(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckChildren(t)
	mptest.CheckShm(t)
	a, b, err := Pipe(true, SharedMemory(0))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cmd := startChild(t, "stall", nil, b)
	ctx := ctxTimeout(t)
	big := pattern(DefaultSharedMemoryThreshold+1, 5)
	for range sendSegs {
		if err := a.SendBytes(ctx, big); err != nil {
			t.Fatal(err)
		}
	}
	sent := make(chan error, 1)
	go func() { sent <- a.SendBytes(ctx, big) }()
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if err := <-sent; err == nil || ctx.Err() != nil {
		t.Fatalf("a send waiting for a dead receiver's segment: got %v, want an error before the deadline", err)
	}
}

// TestSharedMemoryWaitForSegment: with every segment held by the
// receiver, a send waits until its context ends, and goes through once
// the receiver consumed a payload.
func TestSharedMemoryWaitForSegment(t *testing.T) {
	mptest.CheckFDs(t)
	a, b := shmPipe(t, 4096)
	ctx := ctxTimeout(t)
	msg := pattern(8192, 7)
	for range sendSegs {
		if err := a.SendBytes(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := a.SendBytes(short, msg); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send with every segment held: got %v, want DeadlineExceeded", err)
	}
	// A send that sleeps on the futex word of the oldest segment is
	// woken when the receiver frees it.
	sent := make(chan error, 1)
	go func() { sent <- a.SendBytes(ctx, msg) }()
	waitForWaiter(t, a)
	if got, err := b.RecvBytes(ctx); err != nil || !bytes.Equal(got, msg) {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("send after the receiver freed a segment: %v", err)
	}
	for range sendSegs {
		if got, err := b.RecvBytes(ctx); err != nil || !bytes.Equal(got, msg) {
			t.Fatal(err)
		}
	}
}

// TestSharedMemoryBadFrames: a shared-memory header without exactly one
// sealed memfd of the announced size is refused (ErrBadFrame), and every
// descriptor that came with it is closed.
func TestSharedMemoryBadFrames(t *testing.T) {
	mptest.CheckFDs(t)
	unsealed := func(n int) []int {
		fd, err := unix.MemfdCreate("multiproc-ipc-frame", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		unix.Ftruncate(fd, int64(n))
		return []int{fd}
	}
	segment := func(size int) []int {
		s, err := newSegment(size)
		if err != nil {
			t.Fatal(err)
		}
		fd, _ := unix.Dup(s.fd)
		s.close()
		return []int{fd}
	}
	notSegment := func(n int) []int {
		fd := unsealed(n)[0]
		unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, shmSeals)
		return []int{fd}
	}
	tests := []struct {
		name string
		size int
		fds  func() []int
	}{
		{"no memfd", 100, func() []int { return nil }},
		{"two memfds", 100, func() []int { return append(segment(4096), segment(4096)...) }},
		{"unsealed", 100, func() []int { return unsealed(4096) }},
		{"not a segment", 100, func() []int { return notSegment(4096) }},
		{"too short", 4096 - segHeader + 1, func() []int { return segment(4096) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := shmPipe(t, 64)
			fds := tt.fds()
			var oob []byte
			if len(fds) > 0 {
				oob = unix.UnixRights(fds...)
			}
			a.wmu.Lock()
			err := a.write(ctxTimeout(t), oob, appendShmHeader(nil, tt.size))
			a.wmu.Unlock()
			for _, fd := range fds {
				unix.Close(fd)
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.RecvBytes(ctxTimeout(t)); !errors.Is(err, ErrBadFrame) {
				t.Fatalf("got %v, want ErrBadFrame", err)
			}
		})
	}
}

// BenchmarkSharedMemory measures one-way throughput to a child that
// receives into its own buffer (RecvBytesInto), by payload size, inline
// over a socketpair and through shared-memory frames: where the two cross
// is DefaultSharedMemoryThreshold (docs/performance.md, "Big data").
func BenchmarkSharedMemory(b *testing.B) {
	for _, size := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20} {
		for _, mode := range []string{"inline", "shm"} {
			opts := []Option{Socketpair()}
			if mode == "shm" {
				opts = append(opts, SharedMemory(1))
			}
			b.Run(mode+"/"+strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
				ctx := context.Background()
				data, sinkData := mustPipe(b, true, opts...)
				cmd := startChild(b, "sink", nil, sinkData, sinkData)
				defer waitChild(b, cmd)
				defer data.Close()
				msg := pattern(size, 1)
				ack := func() int {
					if err := data.SendBytes(ctx, nil); err != nil {
						b.Fatal(err)
					}
					m, err := data.RecvBytes(ctx)
					if err != nil {
						b.Fatal(err)
					}
					n, _ := strconv.Atoi(string(m))
					return n
				}
				data.SendBytes(ctx, msg)
				base := ack()
				b.SetBytes(int64(size))
				for b.Loop() {
					if err := data.SendBytes(ctx, msg); err != nil {
						b.Fatal(err)
					}
				}
				if got := ack() - base; got != b.N*size {
					b.Fatalf("sink read %d bytes, want %d", got, b.N*size)
				}
				b.ReportMetric(float64(b.N)*float64(size)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		}
	}
}

// FuzzSharedMemoryFrames: a Conn with SharedMemory reading random bytes
// (no descriptors) never panics, refuses every shared-memory header (none
// brings its memfd, no locator names one of its segments) with
// ErrBadFrame or ErrSharedMemoryGone, and reads ordinary frames as a Conn
// without the option does.
func FuzzSharedMemoryFrames(f *testing.F) {
	f.Add([]byte{0, 0, 0, 4, 'p', 'i', 'n', 'g'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 0, 2})
	f.Add([]byte{0xff, 0xff, 0xff, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 2})
	f.Add([]byte{0, 0, 0, 1, 'x', 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0})
	// Over-a-pipe headers (procHeader) with locators: nothing of them is
	// one of this test's segments.
	f.Add([]byte{0xff, 0xff, 0xff, 0xfd, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4})
	f.Add([]byte{0xff, 0xff, 0xff, 0xfd, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		a, b, err := Pipe(true, SharedMemory(16), MaxFrameSize(fuzzMax))
		if err != nil {
			t.Skip(err)
		}
		defer a.Close()
		defer b.Close()
		go func() {
			a.wmu.Lock()
			a.write(ctx, nil, data)
			a.wmu.Unlock()
			a.Close()
		}()
		sawShm := false
		for rest := data; len(rest) >= 4; {
			n := int64(int32(binary.BigEndian.Uint32(rest)))
			if n == -2 || n == -3 {
				sawShm = true
				break
			}
			if n < 0 || n > fuzzMax || int64(len(rest)-4) < n {
				break
			}
			rest = rest[4+n:]
		}
		var rerr error
		for {
			if _, err := b.RecvBytes(ctx); err != nil {
				rerr = err
				break
			}
		}
		if sawShm && !errors.Is(rerr, ErrBadFrame) && !errors.Is(rerr, ErrTruncated) && !errors.Is(rerr, ErrSharedMemoryGone) {
			var tl *FrameTooLargeError
			if !errors.As(rerr, &tl) {
				t.Fatalf("a shared-memory header without its memfd: got %v", rerr)
			}
		}
	})
}

// TestSharedMemorySendFrames: SendFrames mixes inline and shared-memory
// frames in order.
func TestSharedMemorySendFrames(t *testing.T) {
	mptest.CheckFDs(t)
	const th = 4096
	a, b := shmPipe(t, th)
	ctx := ctxTimeout(t)
	var frames [][]byte
	for i, n := range []int{1, th + 1, 10, th, 3 * th, 3 * th, 0, 2 * th} {
		frames = append(frames, pattern(n, byte(i)))
	}
	if err := a.SendFrames(ctx, frames...); err != nil {
		t.Fatal(err)
	}
	for i, want := range frames {
		got, err := b.RecvBytes(ctx)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d (%d bytes): %v", i, len(want), err)
		}
	}
}

// waitForWaiter returns once a sender of c sleeps on a segment's word
// (busy set to segBusyWaited).
func waitForWaiter(t *testing.T, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		st := c.shmState()
		st.mu.Lock()
		for _, s := range st.send {
			if atomic.LoadUint32(s.busy()) == segBusyWaited {
				st.mu.Unlock()
				return
			}
		}
		st.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no sender waits for a segment")
}

// TestSendFramesLazy: lazy frames among ordinary ones arrive in order,
// bytes in = bytes out, at and one byte over the threshold (a lazy frame
// over it is written straight into a segment: RecvShared gets it in
// place), on a Conn with SharedMemory and on one without; a Fill error
// sends nothing and leaves the Conn usable; a Batcher keeps the order.
func TestSendFramesLazy(t *testing.T) {
	mptest.CheckFDs(t)
	const th = 4096
	for _, withShm := range []bool{true, false} {
		t.Run("shm="+strconv.FormatBool(withShm), func(t *testing.T) {
			var a, b *Conn
			if withShm {
				a, b = shmPipe(t, th)
			} else {
				var err error
				if a, b, err = Pipe(true); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { a.Close(); b.Close() })
			}
			ctx := ctxTimeout(t)
			frames := [][]byte{pattern(1, 1), pattern(th+1, 2), pattern(10, 3)}
			sizes := []int{0, th, th + 1, 3*th + 5, 20 << 10}
			var lazy []LazyFrame
			var want [][]byte
			for i, n := range sizes {
				p := pattern(n, byte(10+i))
				lazy = append(lazy, LazyFrame{Before: min(i, len(frames)), Size: n, Fill: func(dst []byte) error {
					if len(dst) != n {
						return errors.New("wrong room")
					}
					copy(dst, p)
					return nil
				}})
			}
			// The order: lazy frames go before frames[Before].
			li := 0
			for fi := 0; fi <= len(frames); fi++ {
				for li < len(lazy) && lazy[li].Before == fi {
					want = append(want, pattern(sizes[li], byte(10+li)))
					li++
				}
				if fi < len(frames) {
					want = append(want, frames[fi])
				}
			}
			if err := a.SendFramesLazy(ctx, frames, lazy); err != nil {
				t.Fatal(err)
			}
			for i, w := range want {
				got, release, err := b.RecvShared(ctx, nil)
				if err != nil || !bytes.Equal(got, w) {
					t.Fatalf("frame %d (%d bytes): %v", i, len(w), err)
				}
				if inPlace := release != nil; inPlace != (withShm && len(w) > th) {
					t.Errorf("frame %d of %d bytes: in shared memory %v", i, len(w), inPlace)
				}
				if release != nil {
					release()
				}
			}
			// A Fill that fails sends nothing; the Conn goes on.
			boom := errors.New("boom")
			for _, n := range []int{th + 1, 10} {
				err := a.SendFramesLazy(ctx, nil, []LazyFrame{{Size: n, Fill: func([]byte) error { return boom }}})
				if !errors.Is(err, boom) {
					t.Fatalf("Fill error: got %v", err)
				}
			}
			// Through a Batcher, in order with queued frames.
			bt := NewBatcher(a)
			big := pattern(2*th, 7)
			bt.Enqueue(pattern(3, 5))
			bt.EnqueueLazy(len(big), func(dst []byte) error { copy(dst, big); return nil })
			bt.Enqueue(pattern(4, 6))
			if err := bt.Flush(); err != nil {
				t.Fatal(err)
			}
			for i, w := range [][]byte{pattern(3, 5), big, pattern(4, 6)} {
				got, err := b.RecvBytes(ctx)
				if err != nil || !bytes.Equal(got, w) {
					t.Fatalf("batched frame %d: %v", i, err)
				}
			}
			// Out of order or out of bounds: refused before anything is sent.
			if err := a.SendFramesLazy(ctx, frames, []LazyFrame{{Before: 2, Size: 1, Fill: func([]byte) error { return nil }}, {Before: 1}}); err == nil {
				t.Error("lazy frames out of order: no error")
			}
			if err := a.SendFramesLazy(ctx, nil, []LazyFrame{{Size: -1}}); err == nil {
				t.Error("a negative lazy size: no error")
			}
		})
	}
}

// TestSharedMemoryOverPipes: with SharedMemoryOverPipes a Pipe stays a
// pair of pipes and large frames still go through shared memory, the
// receiver reopening the sender's segment through /proc: bytes in = bytes
// out at and one byte over the threshold, lazy frames in place, a child
// echoing both ways; a sender SIGKILLed mid-stream leaves whole frames,
// ErrSharedMemoryGone for frames whose segment died with it, then the end
// of the stream; bad locators are refused, and a frame whose segment is
// gone does not break the frames after it.
func TestSharedMemoryOverPipes(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckChildren(t)
	mptest.CheckShm(t)
	const th = 4096
	ctx := ctxTimeout(t)
	t.Run("roundtrip", func(t *testing.T) {
		a, b, err := Pipe(true, SharedMemory(th), SharedMemoryOverPipes())
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		defer b.Close()
		if a.wsocket || b.wsocket || !a.pipeW {
			t.Fatal("SharedMemoryOverPipes made a socketpair")
		}
		for _, n := range []int{0, th - 1, th, th + 1, 3<<20 + 5} {
			want := pattern(n, byte(n))
			if err := a.SendBytes(ctx, want); err != nil {
				t.Fatal(err)
			}
			got, release, err := b.RecvShared(ctx, nil)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%d bytes: %v", n, err)
			}
			if (release != nil) != (n > th) {
				t.Fatalf("%d bytes: in shared memory %v", n, release != nil)
			}
			if release != nil {
				release()
			}
			if err := b.SendFramesLazy(ctx, nil, []LazyFrame{{Size: n, Fill: func(dst []byte) error { copy(dst, want); return nil }}}); err != nil {
				t.Fatal(err)
			}
			if got, err := a.RecvBytes(ctx); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("lazy %d bytes back: %v", n, err)
			}
		}
	})
	t.Run("child", func(t *testing.T) {
		a, b, err := Pipe(true, SharedMemory(8192), SharedMemoryOverPipes())
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		cmd := startChild(t, "echo", nil, b)
		for _, n := range []int{8192, 8193, 4 << 20} {
			want := pattern(n, 9)
			if err := a.SendBytes(ctx, want); err != nil {
				t.Fatal(err)
			}
			got, err := a.RecvBytes(ctx)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%d bytes: echo: %v", n, err)
			}
		}
		a.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("killed", func(t *testing.T) {
		const n = 8 << 20
		a, b, err := Pipe(true, SharedMemory(0), SharedMemoryOverPipes())
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		cmd := startChild(t, "shm-flood", []string{strconv.Itoa(n)}, b)
		want := pattern(n, 3)
		for i := range 3 {
			got, err := a.RecvBytes(ctx)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("frame %d: %v", i, err)
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		for {
			got, err := a.RecvBytes(ctx)
			if err == io.EOF {
				break
			}
			if errors.Is(err, ErrSharedMemoryGone) {
				continue
			}
			if err != nil {
				t.Fatalf("after the kill: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("a frame received after the kill changed")
			}
		}
		a.Close()
		if k := frameMappings(t); k != 0 {
			t.Fatalf("%d segments still mapped after Close", k)
		}
	})
	t.Run("locators", func(t *testing.T) {
		w, r0, err := Pipe(true)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		r, err := ConnFromHandleOf(t, r0, SharedMemory(16))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		f, err := os.CreateTemp(t.TempDir(), "notseg")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var st unix.Stat_t
		unix.Fstat(int(f.Fd()), &st)
		memfd, err := unix.MemfdCreate("not-a-segment", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(memfd)
		unix.Ftruncate(memfd, 1<<16)
		var mst unix.Stat_t
		unix.Fstat(memfd, &mst)
		frame := func(pid, fd uint32, dev, ino uint64) []byte {
			b := binary.BigEndian.AppendUint32(nil, procHeader)
			b = binary.BigEndian.AppendUint64(b, 100)
			b = binary.BigEndian.AppendUint32(b, pid)
			b = binary.BigEndian.AppendUint32(b, fd)
			b = binary.BigEndian.AppendUint64(b, dev)
			return binary.BigEndian.AppendUint64(b, ino)
		}
		raw := func(b []byte) {
			w.wmu.Lock()
			defer w.wmu.Unlock()
			if err := w.write(ctx, nil, b); err != nil {
				t.Fatal(err)
			}
		}
		self := uint32(os.Getpid())
		for _, tc := range []struct {
			name  string
			frame []byte
			gone  bool // ErrSharedMemoryGone, and the Conn goes on
		}{
			{"another file", frame(self, uint32(f.Fd()), st.Dev, st.Ino+1), true},
			{"not open", frame(self, 1<<20, 1, 1), true},
			{"not a segment", frame(self, uint32(memfd), mst.Dev, mst.Ino), false},
		} {
			raw(tc.frame)
			_, err := r.RecvBytes(ctx)
			if tc.gone != errors.Is(err, ErrSharedMemoryGone) || err == nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if tc.gone {
				if err := w.SendBytes(ctx, []byte("next")); err != nil {
					t.Fatal(err)
				}
				if got, err := r.RecvBytes(ctx); err != nil || string(got) != "next" {
					t.Fatalf("%s: the frame after: %q, %v", tc.name, got, err)
				}
			}
		}
		// pid 0 is malformed: the Conn is broken from then on.
		w2, r2 := shmPipe(t, 16)
		w2.wmu.Lock()
		w2.write(ctx, nil, frame(0, 3, 1, 1))
		w2.wmu.Unlock()
		if _, err := r2.RecvBytes(ctx); !errors.Is(err, ErrBadFrame) {
			t.Fatalf("pid 0: %v", err)
		}
	})
}
