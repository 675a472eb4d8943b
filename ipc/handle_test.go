// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"encoding/binary"
	"os"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
)

// TestInvalidHandle: bogus descriptors and files are errors, never a
// crash, and the files passed in are closed either way.
func TestInvalidHandle(t *testing.T) {
	mptest.CheckFDs(t)
	good := func() []byte { return binary.BigEndian.AppendUint64([]byte{1, hReadable | hWritable}, 1<<20) }
	cases := []struct {
		name  string
		desc  []byte
		files int
	}{
		{"empty", nil, 1},
		{"short", []byte{1, 3}, 2},
		{"version", append([]byte{9}, good()[1:]...), 2},
		{"no direction", binary.BigEndian.AppendUint64([]byte{1, 0}, 1), 1},
		{"too few files", good(), 1},
		{"too many files", good(), 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var files []*os.File
			for range tc.files {
				r, w, _ := os.Pipe()
				w.Close()
				files = append(files, r)
			}
			if c, err := ConnFromHandle(files, tc.desc); err == nil {
				c.Close()
				t.Fatal("accepted")
			}
			var c Conn
			if err := c.MultiprocAttach(nil, tc.desc); err == nil {
				t.Fatal("MultiprocAttach accepted")
			}
		})
	}
	if _, err := NewConn(nil, nil); err == nil {
		t.Error("NewConn(nil, nil) accepted")
	}
	// A file that is already closed.
	r, w, _ := os.Pipe()
	w.Close()
	r.Close()
	if c, err := NewConn(r, nil); err == nil {
		c.Close()
		t.Error("NewConn of a closed file accepted")
	}
}

// A handle rebuilt in this process behaves like the original, including
// the simplex direction and the maximum frame size; a Conn with unread
// buffered data refuses to be handed over.
func TestHandleRoundTrip(t *testing.T) {
	ctx := context.Background()
	r, w := mustPipe(t, false, MaxFrameSize(100))
	fs, desc, err := w.MultiprocHandle()
	if err != nil {
		t.Fatal(err)
	}
	w2, err := ConnFromHandle(fs, desc)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if w2.Readable() || !w2.Writable() {
		t.Fatal("direction lost")
	}
	if err := w2.SendBytes(ctx, make([]byte, 101)); err == nil {
		t.Fatal("maximum frame size lost")
	}
	w2.SendFrames(ctx, []byte("a"), []byte("b"))
	r.RecvBytes(ctx)
	if _, _, err := r.MultiprocHandle(); err == nil {
		t.Fatal("handle of a Conn with buffered data")
	}
}

// Methods of a zero Conn (for example after a failed MultiprocAttach)
// return errors and touch no descriptor.
func TestZeroConn(t *testing.T) {
	mptest.CheckFDs(t)
	var c Conn
	ctx := context.Background()
	if err := c.SendBytes(ctx, nil); err == nil {
		t.Error("SendBytes on a zero Conn")
	}
	if _, err := c.RecvBytes(ctx); err == nil {
		t.Error("RecvBytes on a zero Conn")
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stdin.Stat(); err != nil {
		t.Errorf("stdin damaged: %v", err)
	}
}
