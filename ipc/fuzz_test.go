// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
)

const fuzzMax = 4 << 10

// FuzzFrameReader feeds arbitrary bytes to a Conn: it never panics, never
// allocates past the maximum frame size, and frames it returns are the
// ones encoded in the input. Valid frames built from the input round-trip.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 4, 'p', 'i', 'n', 'g'})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 'x'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xfe})
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0x10, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		r, w, err := os.Pipe()
		if err != nil {
			t.Skip(err)
		}
		c, err := NewConn(r, nil, MaxFrameSize(fuzzMax))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() { w.Write(data); w.Close() }()
		var ms0, ms1 runtimeMem
		ms0.read()
		var got [][]byte
		var rerr error
		for {
			m, err := c.RecvBytes(ctx)
			if err != nil {
				rerr = err
				break
			}
			got = append(got, m)
		}
		ms1.read()
		if grew := ms1.total - ms0.total; grew > uint64(4*len(data)+2*readBufSize+fuzzMax+64<<10) {
			t.Fatalf("allocated %d bytes for %d input bytes", grew, len(data))
		}
		// Decode the input independently and compare.
		var want [][]byte
		rest := data
		var werr error
		for {
			if len(rest) == 0 {
				werr = io.EOF
				break
			}
			if len(rest) < 4 {
				werr = ErrTruncated
				break
			}
			n := int64(int32(binary.BigEndian.Uint32(rest)))
			h := 4
			if n == -1 {
				if len(rest) < 12 {
					werr = ErrTruncated
					break
				}
				u := binary.BigEndian.Uint64(rest[4:])
				if u > fuzzMax {
					werr = &FrameTooLargeError{}
					break
				}
				n, h = int64(u), 12
			} else if n < 0 {
				werr = ErrBadFrame
				break
			}
			if n > fuzzMax {
				werr = &FrameTooLargeError{}
				break
			}
			if int64(len(rest)-h) < n {
				werr = ErrTruncated
				break
			}
			want = append(want, rest[h:h+int(n)])
			rest = rest[h+int(n):]
		}
		if len(got) != len(want) {
			t.Fatalf("got %d frames, want %d (%v / %v)", len(got), len(want), rerr, werr)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d differs", i)
			}
		}
		var fe *FrameTooLargeError
		switch {
		case errors.As(werr, &fe):
			if !errors.As(rerr, &fe) {
				t.Fatalf("got %v, want FrameTooLargeError", rerr)
			}
		case rerr != werr:
			t.Fatalf("got %v, want %v", rerr, werr)
		}

		// Round trip: the input cut into frames.
		a, b, err := Pipe(true)
		if err != nil {
			t.Skip(err)
		}
		defer a.Close()
		defer b.Close()
		frames := bytes.SplitAfter(data, []byte{0})
		go a.SendFrames(ctx, frames...)
		for i, fr := range frames {
			m, err := b.RecvBytes(ctx)
			if err != nil || !bytes.Equal(m, fr) {
				t.Fatalf("round trip frame %d: %v", i, err)
			}
		}
	})
}

// fuzzPeer runs role against a peer that sends frames and swallows
// everything it receives.
func fuzzPeer(t *testing.T, frames [][]byte, role func(ctx context.Context, c *Conn) error) error {
	ctx := context.Background()
	a, b, err := Pipe(true)
	if err != nil {
		t.Skip(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, f := range frames {
			if b.SendBytes(ctx, f) != nil {
				return
			}
		}
		for {
			if _, err := b.RecvBytes(ctx); err != nil {
				return
			}
		}
	}()
	err = role(ctx, a)
	a.Close()
	<-done
	b.Close()
	return err
}

// FuzzAnswerChallenge: a random challenge and reply never make the
// answering side panic or succeed without #WELCOME#.
func FuzzAnswerChallenge(f *testing.F) {
	f.Add([]byte("#CHALLENGE#{sha256}0123456789012345678901234567890123456789"), []byte("#WELCOME#"))
	f.Add([]byte("#CHALLENGE#01234567890123456789"), []byte("#FAILURE#"))
	f.Add([]byte("#CHALLENGE#{sha3_384}x"), []byte(""))
	f.Add([]byte("#CHALLENGE#{md5}0123456789012345678901234567890123456789"), []byte("#WELCOME#"))
	f.Fuzz(func(t *testing.T, challenge, reply []byte) {
		err := fuzzPeer(t, [][]byte{challenge, reply}, func(ctx context.Context, c *Conn) error {
			return AnswerChallenge(ctx, c, []byte("key"))
		})
		if err == nil && string(reply) != welcomeMsg {
			t.Fatalf("accepted reply %q", reply)
		}
		if err != nil && !errors.Is(err, ErrAuthentication) {
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}

// FuzzDeliverChallenge: a random answer is refused (it cannot know the
// random challenge), without panicking.
func FuzzDeliverChallenge(f *testing.F) {
	f.Add([]byte("{sha256}01234567890123456789012345678901"))
	f.Add(make([]byte, 16))
	f.Add(make([]byte, 20))
	f.Add([]byte("{sha3_384"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, answer []byte) {
		for _, strict := range []bool{false, true} {
			err := fuzzPeer(t, [][]byte{answer}, func(ctx context.Context, c *Conn) error {
				return DeliverChallenge(ctx, c, []byte("key"), strict)
			})
			if !errors.Is(err, ErrAuthentication) {
				t.Fatalf("answer %q: %v", answer, err)
			}
		}
	})
}

// FuzzHandleDescriptor: a random descriptor never panics and never leaks
// the files given with it: ConnFromHandle owns them, so once it returned
// (and the Conn it made, if any, is closed) each is closed. The process's
// descriptors are counted before and after.
func FuzzHandleDescriptor(f *testing.F) {
	f.Add([]byte{1, 3, 0, 0, 0, 0, 0, 0, 1, 0}, uint8(2))
	f.Add([]byte{1, 9, 0, 0, 0, 0, 0, 0, 1, 0}, uint8(1))
	f.Add([]byte{1, 0x1f, 0, 0, 0, 0, 0, 0, 1, 0}, uint8(1))
	f.Add([]byte{1, 3, 0, 0, 0, 0, 0, 0, 1, 0}, uint8(3))
	f.Add([]byte{2, 3, 0, 0, 0, 0, 0, 0, 1, 0}, uint8(2))
	f.Add([]byte{1, 3}, uint8(2))
	f.Fuzz(func(t *testing.T, desc []byte, n uint8) {
		var files []*os.File
		for range n % 4 {
			r, w, err := os.Pipe()
			if err != nil {
				t.Skip(err)
			}
			w.Close()
			files = append(files, r)
		}
		before := countFDs(t)
		c, err := ConnFromHandle(files, desc)
		if err == nil {
			c.Close()
		}
		if after := countFDs(t); after != before-len(files) {
			t.Fatalf("descriptor %x with %d files (err %v): %d descriptors open before, %d after, want %d",
				desc, len(files), err, before, after, before-len(files))
		}
	})
}

// countFDs returns the number of this process's open descriptors.
func countFDs(t *testing.T) int {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	return len(names)
}
