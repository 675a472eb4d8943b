// SPDX-License-Identifier: Apache-2.0

package forkserver

import (
	"bytes"
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/google/go-cmp/cmp"
	fspb "github.com/multiproc/multiproc/proto/forkserver/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// FuzzRequest: any frame a warm process receives is refused or accepted
// without panicking, and an accepted request keeps what was sent. The
// hand decoder (decodeRequest) agrees with proto.Unmarshal, and the hand
// encoder (appendRequest) with proto.Marshal.
func FuzzRequest(f *testing.F) {
	for _, r := range []*fspb.Request{
		{Bootstrap: []byte{1, 2, 3}, Files: 3},
		{Bootstrap: []byte("boot"), Files: 260, Daemon: true, ReplaceEnv: true, Env: []string{"A=B", "C="}, Name: "Process-1"},
		{Files: 2},
		{Bootstrap: []byte{1}, Files: 1, KeepStdio: 5},
		{Bootstrap: []byte{1}, Files: 0, KeepStdio: 7},
		{Bootstrap: []byte{1}, Files: 3, KeepStdio: 8},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 3)
		f.Add(b, 253)
	}
	f.Add([]byte{0xff, 0xff, 0xff}, 0)
	f.Add([]byte{0x10, 0x05, 0x10, 0x03, 0x0a, 0x01, 0x01, 0x2a, 0x01, 0xff}, 3) // files twice; a bad string
	f.Add([]byte{0x12, 0x01, 0x00, 0x08, 0x01}, 3)                               // fields of the wrong wire type
	f.Fuzz(func(t *testing.T, b []byte, nfiles int) {
		var want fspb.Request
		perr := proto.Unmarshal(b, &want)
		got, err := decodeRequest(b)
		if (perr == nil) != (err == nil) {
			t.Fatalf("proto.Unmarshal: %v; decodeRequest: %v", perr, err)
		}
		if err == nil {
			if diff := cmp.Diff(&want, got, protocmp.Transform(), protocmp.IgnoreUnknown()); diff != "" {
				t.Fatalf("decoders disagree (-proto +hand):\n%s", diff)
			}
			pb, err := proto.MarshalOptions{Deterministic: true}.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if hb := appendRequest(nil, got); !bytes.Equal(pb, hb) {
				t.Fatalf("encoders disagree: proto %x, hand %x", pb, hb)
			}
		}
		req, err := parseRequest(b, nfiles)
		if err != nil {
			return
		}
		if req.KeepStdio > 7 || req.Files < stdioPassed(req.KeepStdio) || req.Files > maxFiles || nfiles > int(req.Files) || len(req.Bootstrap) == 0 {
			t.Fatalf("accepted a bad request: %v with %d files", req, nfiles)
		}
		again, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		var back fspb.Request
		if err := proto.Unmarshal(again, &back); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(req, &back, protocmp.Transform()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzControlFrames: any byte stream on a warm process's control socket
// gives frames no larger than the limit, or an error, never a panic; a
// well-formed stream gives back what was written.
func FuzzControlFrames(f *testing.F) {
	frame := func(payloads ...string) []byte {
		var b []byte
		for _, p := range payloads {
			b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
			b = append(b, p...)
		}
		return b
	}
	f.Add(frame("hello", "", "world"), 16)
	f.Add(frame("x"), 0)
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff, 1}, 1<<20)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1}, 1<<20)
	f.Add([]byte{0, 0, 0}, 10)
	f.Fuzz(func(t *testing.T, stream []byte, max int) {
		if max < 0 || max > 1<<20 || len(stream) > 64<<10 {
			return
		}
		sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(sp[0])
		done := make(chan error, 1)
		go func() {
			defer unix.Close(sp[1])
			done <- writeFrame(sp[1], nil) // a first, empty frame
			for b := stream; len(b) > 0; {
				n, err := unix.Write(sp[1], b)
				if err != nil {
					return
				}
				b = b[n:]
			}
		}()
		c := newControlReader(sp[0])
		if b, err := c.frame(max); err != nil || len(b) != 0 {
			t.Fatalf("first frame: %q, %v", b, err)
		}
		var got []byte
		for {
			b, err := c.frame(max)
			if err != nil {
				break
			}
			if len(b) > max {
				t.Fatalf("frame of %d bytes over the limit %d", len(b), max)
			}
			got = binary.BigEndian.AppendUint32(got, uint32(len(b)))
			got = append(got, b...)
		}
		if !bytes.HasPrefix(stream, got) {
			t.Fatalf("frames read are not the stream's prefix")
		}
		if len(c.fds) != 0 {
			t.Fatalf("descriptors from nowhere: %v", c.fds)
		}
		<-done
	})
}
