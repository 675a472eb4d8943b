// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/multiproc/multiproc/internal/mptest"
)

var transports = []struct {
	name string
	opts []Option
}{{"pipes", nil}, {"socketpair", []Option{Socketpair()}}}

func mustPipe(t testing.TB, duplex bool, opts ...Option) (*Conn, *Conn) {
	t.Helper()
	a, b, err := Pipe(duplex, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

type sample struct {
	N    int
	S    string
	F    float64
	List []int
}

// _TestConnection.test_connection: objects, bytes and arrays echoed by a
// child process, recv_bytes_into with an offset, BufferTooShort, poll.
func TestConnectionEchoChild(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			mptest.CheckFDs(t)
			ctx := context.Background()
			a, b := mustPipe(t, true, tr.opts...)
			cmd := startChild(t, "echo", nil, b)
			defer waitChild(t, cmd)
			defer a.Close()

			// Objects through the default codec.
			want := sample{N: 42, S: "ping", F: 3.5, List: []int{1, 2, 3}}
			if err := a.Send(ctx, want); err != nil {
				t.Fatal(err)
			}
			var got sample
			if err := a.Recv(ctx, &got); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("object round trip (-want +got):\n%s", d)
			}

			// Bytes, and poll before and after.
			if a.Ready() {
				t.Error("Ready before anything was sent")
			}
			msg := []byte("hello world")
			if err := a.SendBytes(ctx, msg); err != nil {
				t.Fatal(err)
			}
			if ok, err := a.Poll(ctx); !ok || err != nil {
				t.Fatalf("Poll = %v, %v", ok, err)
			}
			if got, err := a.RecvBytes(ctx); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("RecvBytes = %q, %v", got, err)
			}

			// RecvBytesInto at an offset.
			buf := make([]byte, 64)
			a.SendBytes(ctx, msg)
			n, err := a.RecvBytesInto(ctx, buf[7:])
			if err != nil || n != len(msg) || !bytes.Equal(buf[7:7+n], msg) || !bytes.Equal(buf[:7], make([]byte, 7)) {
				t.Fatalf("RecvBytesInto at offset: %d %v %q", n, err, buf)
			}

			// Too short: the whole message is still delivered.
			long := bytes.Repeat([]byte("abc"), 100)
			a.SendBytes(ctx, long)
			_, err = a.RecvBytesInto(ctx, make([]byte, 10))
			var bt *BufferTooShortError
			if !errors.As(err, &bt) || !bytes.Equal(bt.Msg, long) {
				t.Fatalf("RecvBytesInto short buffer: %v", err)
			}

			// 16 MiB.
			big := make([]byte, 16<<20)
			for i := range big {
				big[i] = byte(i * 7)
			}
			if err := a.SendBytes(ctx, big); err != nil {
				t.Fatal(err)
			}
			if got, err := a.RecvBytes(ctx); err != nil || !bytes.Equal(got, big) {
				t.Fatalf("16 MiB: %d bytes, %v", len(got), err)
			}

			// An empty frame is a frame.
			a.SendBytes(ctx, nil)
			if got, err := a.RecvBytes(ctx); err != nil || len(got) != 0 {
				t.Fatalf("empty frame: %q %v", got, err)
			}
		})
	}
}

// test_connection: EOFError when the peer closed between frames; an
// error, not a short message, when it closed inside one.
func TestEOFAndTruncated(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ctx := context.Background()
			a, b := mustPipe(t, true, tr.opts...)
			a.SendBytes(ctx, []byte("last"))
			a.Close()
			if got, err := b.RecvBytes(ctx); err != nil || string(got) != "last" {
				t.Fatalf("got %q %v", got, err)
			}
			for range 2 {
				if _, err := b.RecvBytes(ctx); err != io.EOF {
					t.Fatalf("want io.EOF, got %v", err)
				}
			}
			if !b.Ready() {
				t.Error("EOF should make the Conn ready")
			}

			for _, cut := range []int{2, 4, 9} { // inside the header, after it, inside the body
				r, w, _ := os.Pipe()
				c, err := NewConn(r, nil)
				if err != nil {
					t.Fatal(err)
				}
				frame := binary.BigEndian.AppendUint32(nil, 10)
				frame = append(frame, "0123456789"...)
				w.Write(frame[:cut])
				w.Close()
				if _, err := c.RecvBytes(ctx); !errors.Is(err, ErrTruncated) {
					t.Errorf("cut at %d: want ErrTruncated, got %v", cut, err)
				}
				c.Close()
			}
		})
	}
}

func TestClosedConn(t *testing.T) {
	ctx := context.Background()
	a, b := mustPipe(t, true)
	a.Close()
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if !a.Closed() || b.Closed() {
		t.Error("Closed() wrong")
	}
	for name, err := range map[string]error{
		"SendBytes": a.SendBytes(ctx, []byte("x")),
		"Send":      a.Send(ctx, 1),
		"RecvBytes": func() error { _, err := a.RecvBytes(ctx); return err }(),
		"Poll":      func() error { _, err := a.Poll(ctx); return err }(),
		"Handle":    func() error { _, _, err := a.MultiprocHandle(); return err }(),
		"WaitFD":    func() error { _, _, err := a.WaitFD(); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s on closed Conn: %v", name, err)
		}
	}
}

// Close from another goroutine wakes a blocked receiver and Poll.
func TestCloseWakesReceiver(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			_, b := mustPipe(t, true, tr.opts...)
			errc := make(chan error, 2)
			go func() { _, err := b.RecvBytes(context.Background()); errc <- err }()
			go func() { _, err := b.Poll(context.Background()); errc <- err }()
			mptest.WaitBlocked(t, "ipc.(*Conn).RecvBytes(")
			mptest.WaitBlocked(t, "ipc.(*Conn).Poll(")
			b.Close()
			for range 2 {
				if err := <-errc; !errors.Is(err, ErrClosed) {
					t.Errorf("want ErrClosed, got %v", err)
				}
			}
		})
	}
}

// test_duplex_false: the ends of a one-way Pipe.
func TestSimplex(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ctx := context.Background()
			r, w := mustPipe(t, false, tr.opts...)
			if !r.Readable() || r.Writable() || w.Readable() || !w.Writable() {
				t.Fatal("Readable/Writable wrong")
			}
			if err := r.SendBytes(ctx, []byte("x")); !errors.Is(err, ErrReadOnly) {
				t.Errorf("send on read end: %v", err)
			}
			if _, err := w.RecvBytes(ctx); !errors.Is(err, ErrWriteOnly) {
				t.Errorf("recv on write end: %v", err)
			}
			if _, err := w.Poll(ctx); !errors.Is(err, ErrWriteOnly) {
				t.Errorf("poll on write end: %v", err)
			}
			w.SendBytes(ctx, []byte("one way"))
			if got, err := r.RecvBytes(ctx); err != nil || string(got) != "one way" {
				t.Fatalf("%q %v", got, err)
			}
		})
	}
}

// _TestPoll: empty frames are pollable; frames never merge.
func TestBuffered(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ctx := context.Background()
			a, b := mustPipe(t, true, tr.opts...)
			if b.Buffered() {
				t.Fatal("Buffered before anything was sent")
			}
			// One write carries both frames, so the first receive reads
			// both and keeps the second.
			if err := a.SendFrames(ctx, []byte("one"), []byte("two")); err != nil {
				t.Fatal(err)
			}
			if b.Buffered() {
				t.Fatal("Buffered before anything was received")
			}
			for i, want := range []string{"one", "two"} {
				got, err := b.RecvBytes(ctx)
				if err != nil || string(got) != want {
					t.Fatalf("frame %d: %q %v, want %q", i, got, err, want)
				}
				if more := i == 0; b.Buffered() != more {
					t.Fatalf("after frame %d: Buffered = %v, want %v", i, !more, more)
				}
			}
		})
	}
}

func TestPollEmptyAndDontMerge(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ctx := context.Background()
			a, b := mustPipe(t, true, tr.opts...)
			seq := [][]byte{[]byte("hello"), {}, []byte("a"), []byte("b"), {}, []byte("bye"), {}, {}}
			if err := a.SendFrames(ctx, seq...); err != nil {
				t.Fatal(err)
			}
			for i, want := range seq {
				if ok, err := b.Poll(ctx); !ok || err != nil {
					t.Fatalf("frame %d: Poll = %v %v", i, ok, err)
				}
				got, err := b.RecvBytes(ctx)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("frame %d: %q %v, want %q", i, got, err, want)
				}
			}
			if b.Ready() {
				t.Error("Ready after every frame was read")
			}
			// An expired context polls once.
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if ok, err := b.Poll(cctx); ok || !errors.Is(err, context.Canceled) {
				t.Errorf("Poll with a cancelled ctx = %v %v", ok, err)
			}
			tctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
			defer cancel()
			if ok, err := b.Poll(tctx); ok || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Poll with a timeout = %v %v", ok, err)
			}
		})
	}
}

// test_boundaries: a child that polls the shared read end of a pipe must
// not take part of a frame with it.
func TestPollBoundariesAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	r, w := mustPipe(t, false)
	fs, desc, err := r.MultiprocHandle()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ConnFromHandle(fs, desc) // stays here while the child polls a copy
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	cmd := startChild(t, "poll", nil, r)
	w.SendFrames(ctx, []byte("first"), []byte("second"))
	w.Close()
	waitChild(t, cmd)
	got, err := r2.RecvBytes(ctx)
	if err != nil || string(got) != "first" {
		t.Fatalf("after the child polled: %q %v", got, err)
	}
	if got, _ := r2.RecvBytes(ctx); string(got) != "second" {
		t.Fatalf("second frame: %q", got)
	}
}

// Frames from concurrent senders never interleave.
func TestConcurrentSenders(t *testing.T) {
	ctx := context.Background()
	a, b := mustPipe(t, true)
	const senders, each = 4, 50
	done := make(chan error, senders)
	for s := range senders {
		go func() {
			for i := range each {
				m := bytes.Repeat([]byte{byte('a' + s)}, 1000+i*997)
				if err := a.SendBytes(ctx, m); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range senders * each {
		m, err := b.RecvBytes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.Trim(m, string(m[:1]))) != 0 {
			t.Fatal("frames interleaved")
		}
	}
	for range senders {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// A peer announcing a frame over the maximum gets *FrameTooLargeError and
// no allocation of that size; sending one fails before writing.
func TestMaxFrameSize(t *testing.T) {
	ctx := context.Background()
	a, b := mustPipe(t, true, MaxFrameSize(1<<10))
	var fe *FrameTooLargeError
	if err := a.SendBytes(ctx, make([]byte, 2<<10)); !errors.As(err, &fe) || fe.Size != 2<<10 || fe.Max != 1<<10 {
		t.Fatalf("send over max: %v", err)
	}
	for _, hdr := range [][]byte{
		binary.BigEndian.AppendUint32(nil, 1<<30),
		binary.BigEndian.AppendUint64([]byte{0xff, 0xff, 0xff, 0xff}, 1<<40),
		binary.BigEndian.AppendUint64([]byte{0xff, 0xff, 0xff, 0xff}, 1<<63),
	} {
		r, w, _ := os.Pipe()
		c, _ := NewConn(r, nil, MaxFrameSize(1<<10))
		w.Write(hdr)
		var ms0, ms1 runtimeMem
		ms0.read()
		_, err := c.RecvBytes(ctx)
		ms1.read()
		if !errors.As(err, &fe) {
			t.Errorf("header %x: %v", hdr, err)
		}
		if grew := ms1.total - ms0.total; grew > 1<<20 {
			t.Errorf("header %x: allocated %d bytes", hdr, grew)
		}
		// The stream is not aligned any more: the error sticks.
		if _, err2 := c.RecvBytes(ctx); !errors.As(err2, &fe) {
			t.Errorf("second receive: %v", err2)
		}
		w.Close()
		c.Close()
	}
	// A negative length other than -1 is rejected (CPython would read it
	// as an empty frame).
	a.w.(*os.File).Write([]byte{0xff, 0xff, 0xff, 0xfe})
	if _, err := b.RecvBytes(ctx); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("negative length: %v", err)
	}
}

// A cancelled receive in the middle of a big frame resumes where it
// stopped; a cancelled receive between frames loses nothing.
func TestCancelResumesMidFrame(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ctx := context.Background()
			a, b := mustPipe(t, true, tr.opts...)
			big := make([]byte, 4<<20)
			for i := range big {
				big[i] = byte(i % 251)
			}
			// Write the header and half of the body by hand.
			w := a.w
			raw := binary.BigEndian.AppendUint32(nil, uint32(len(big)))
			raw = append(raw, big[:len(big)/2]...)
			werr := make(chan error, 1)
			go func() {
				_, err := writeAll(w, raw)
				werr <- err
			}()
			cctx, cancel := context.WithCancel(ctx)
			got := make(chan error, 1)
			go func() { _, err := b.RecvBytes(cctx); got <- err }()
			// Wait for the first half to be drained by the receiver.
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			cancel()
			if err := <-got; !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled receive: %v", err)
			}
			go func() {
				_, err := writeAll(w, big[len(big)/2:])
				werr <- err
			}()
			msg, err := b.RecvBytes(ctx)
			if err != nil || !bytes.Equal(msg, big) {
				t.Fatalf("resumed frame: %d bytes, %v", len(msg), err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			a.SendBytes(ctx, []byte("next"))
			if msg, _ := b.RecvBytes(ctx); string(msg) != "next" {
				t.Fatalf("frame after: %q", msg)
			}
		})
	}
}

func writeAll(t transport, b []byte) (int, error) {
	w, ok := t.(io.Writer)
	if !ok {
		return 0, errors.New("not a writer")
	}
	return w.Write(b)
}

// test_sendbytes_offset equivalent for SendFrames / RecvBytesInto with a
// buffer reused across frames.
func TestRecvBytesIntoReuse(t *testing.T) {
	ctx := context.Background()
	a, b := mustPipe(t, true)
	buf := make([]byte, 32)
	for i := range 100 {
		m := []byte(strconv.Itoa(i * i))
		a.SendBytes(ctx, m)
		n, err := b.RecvBytesInto(ctx, buf)
		if err != nil || string(buf[:n]) != string(m) {
			t.Fatalf("%d: %q %v", i, buf[:n], err)
		}
	}
}

// After the blocking phase a receiver parks in the netpoller: cancellation
// and Close still wake it, and nothing is lost.
func TestCancelAndCloseAfterBlockingPhase(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			parked := make(chan struct{}, 4)
			hook := func() { parked <- struct{}{} }
			testHookParked.Store(&hook)
			defer testHookParked.Store(nil)
			a, b := mustPipe(t, true, tr.opts...)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { _, err := b.RecvBytes(ctx); errc <- err }()
			<-parked
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled parked receive: %v", err)
			}
			a.SendBytes(context.Background(), []byte("still here"))
			if got, err := b.RecvBytes(context.Background()); err != nil || string(got) != "still here" {
				t.Fatalf("%q %v", got, err)
			}
			// A parked receiver gets data.
			go func() {
				got, err := b.RecvBytes(context.Background())
				if err == nil && string(got) != "late" {
					err = errors.New("got " + string(got))
				}
				errc <- err
			}()
			<-parked
			a.SendBytes(context.Background(), []byte("late"))
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			// Close wakes a parked receiver.
			go func() { _, err := b.RecvBytes(context.Background()); errc <- err }()
			<-parked
			b.Close()
			if err := <-errc; !errors.Is(err, ErrClosed) {
				t.Fatalf("Close of a parked receiver: %v", err)
			}
		})
	}
}

// A sender blocked on a full pipe or socket is woken by cancellation (the
// direction is then broken, as part of the frame went out) and by Close.
func TestBlockedSender(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			a, _ := mustPipe(t, true, tr.opts...)
			big := make([]byte, 16<<20) // more than any pipe or socket buffer
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- a.SendBytes(ctx, big) }()
			// Cancel once the sender has filled the buffer with part of
			// the frame and blocks.
			mptest.WaitBlocked(t, "ipc.(*Conn).SendBytes(")
			cancel()
			err := <-errc
			if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrBroken) {
				t.Fatalf("send cancelled with part of the frame out: %v, want context.Canceled and ErrBroken", err)
			}
			if err := a.SendBytes(context.Background(), []byte("x")); !errors.Is(err, ErrBroken) {
				t.Fatalf("send after a broken frame: %v", err)
			}

			c, _ := mustPipe(t, true, tr.opts...)
			go func() { errc <- c.SendBytes(context.Background(), big) }()
			// Wait until the sender has filled the buffer and blocks.
			for c.wmu.TryLock() {
				c.wmu.Unlock()
				runtime.Gosched()
			}
			c.Close()
			if err := <-errc; !errors.Is(err, ErrClosed) {
				t.Fatalf("Close of a blocked sender: %v", err)
			}
		})
	}
}
