// SPDX-License-Identifier: Apache-2.0

package process

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/multiproc/multiproc/ipc"
	commonpb "github.com/multiproc/multiproc/proto/common/v1"
	pb "github.com/multiproc/multiproc/proto/process/v1"
)

func sampleBootstrap() *pb.Bootstrap {
	gobInt, _ := ipc.DefaultCodec.Marshal(42)
	return &pb.Bootstrap{
		Function: "f", Name: "Process-1:2", Authkey: []byte("0123456789abcdef0123456789abcdef"),
		LogLevel: -1, Daemon: true, Status: 0, ParentPid: 1234, ParentStartTime: 99999,
		StartMethod: "spawn", Ident: []uint32{1, 2}, Env: []string{"A=B", "C="}, TermGraceNs: -1,
		Args: []*pb.Argument{
			{Kind: &pb.Argument_Value{Value: &pb.Value{Encoding: pb.Encoding_ENCODING_GOB, Data: gobInt}}},
			{Kind: &pb.Argument_Value{Value: &pb.Value{Encoding: pb.Encoding_ENCODING_RAW, Data: []byte("raw")}}},
			{Kind: &pb.Argument_Handle{Handle: &pb.HandleRef{Kind: "*ipc.Conn", Files: []uint32{1, 2}, Desc: []byte{1, 2, 3}}}},
		},
		Inherited: []*pb.Inherited{{Key: "tracker", Handle: &pb.HandleRef{Files: []uint32{3}, Desc: []byte("d")}}},
	}
}

func TestDecodeBootstrapMatchesProto(t *testing.T) {
	want := sampleBootstrap()
	b, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeBootstrap(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	var st pb.ChildStatus
	if err := proto.Unmarshal(startedFrame[4:], &st); err != nil || !st.Started || int(startedFrame[3]) != len(startedFrame)-4 {
		t.Fatalf("startedFrame decodes to %v, %v", &st, err)
	}
}

// FuzzBootstrap: the hand-written decoder never panics, agrees with
// proto.Unmarshal whenever both accept the input, and the checks and
// argument decoding that follow never panic either.
func FuzzBootstrap(f *testing.F) {
	b, _ := proto.Marshal(sampleBootstrap())
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x02, 0x0a, 0x00})
	intT, strT, bytesT := reflect.TypeFor[int](), reflect.TypeFor[string](), reflect.TypeFor[[]byte]()
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeBootstrap(b)
		var want pb.Bootstrap
		perr := proto.Unmarshal(b, &want)
		if err == nil && perr == nil {
			if diff := cmp.Diff(&want, got, protocmp.Transform(), protocmp.IgnoreUnknown()); diff != "" {
				t.Fatalf("decoders disagree (-proto +hand):\n%s", diff)
			}
		}
		if perr == nil && err != nil {
			t.Fatalf("proto accepts what decodeBootstrap rejects: %v", err)
		}
		boot, err := parseBootstrap(b, 4)
		if err != nil {
			return
		}
		for _, a := range boot.Args {
			if v := a.GetValue(); v != nil {
				for _, typ := range []reflect.Type{intT, strT, bytesT} {
					decodeValue(typ, v)
				}
			}
		}
	})
}

// FuzzStatus: what a child writes on its status socket (a "started"
// frame, then at most one final frame: a startup error, or the function's
// error and exit code) round-trips through the parent's parser, and a
// stream cut anywhere yields only what was wholly received. Whatever
// else a (possibly broken) child wrote, the parser never panics.
func FuzzStatus(f *testing.F) {
	f.Add(true, uint8(0), "", int32(0), uint16(0), []byte{})
	f.Add(true, uint8(1), "boom", int32(0), uint16(7), []byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add(true, uint8(2), "ValueError: g()", int32(3), uint16(9), []byte{})
	f.Add(false, uint8(1), "no such function", int32(0), uint16(3), []byte{0, 0, 0, 2, 8})
	f.Fuzz(func(t *testing.T, started bool, kind uint8, msg string, code int32, cut uint16, junk []byte) {
		parseStatus(junk) // anything: no panic

		msg = strings.ToValidUTF8(msg, "?")
		var stream []byte
		if started {
			stream = append(stream, startedFrame...)
		}
		var want *pb.ChildStatus
		switch kind % 3 {
		case 1:
			want = &pb.ChildStatus{StartupError: "startup: " + msg}
		case 2:
			want = &pb.ChildStatus{Error: &commonpb.RemoteError{Type: "*errors.errorString", Message: msg}, ExitCode: code}
		}
		if want != nil {
			body, err := proto.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			stream = binary.BigEndian.AppendUint32(stream, uint32(len(body)))
			stream = append(stream, body...)
		}
		gotStarted, got := parseStatus(stream)
		if gotStarted != started {
			t.Fatalf("started = %v, want %v", gotStarted, started)
		}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Fatalf("final status (-want +got):\n%s", diff)
		}
		// A stream cut short (the child died while writing): the started
		// frame counts once whole, the final frame only when whole.
		n := int(cut) % (len(stream) + 1)
		cs, cf := parseStatus(stream[:n])
		if cs != (started && n >= len(startedFrame)) {
			t.Fatalf("cut at %d of %d: started = %v", n, len(stream), cs)
		}
		if (cf != nil) != (want != nil && n == len(stream)) {
			t.Fatalf("cut at %d of %d: final = %v", n, len(stream), cf)
		}
	})
}

func TestParseStatus(t *testing.T) {
	errFrame, _ := proto.Marshal(&pb.ChildStatus{StartupError: "boom"})
	buf := append(append([]byte{}, startedFrame...), append([]byte{0, 0, 0, byte(len(errFrame))}, errFrame...)...)
	started, final := parseStatus(buf)
	if !started || final == nil || final.StartupError != "boom" {
		t.Fatalf("started %v final %v", started, final)
	}
	if started, final := parseStatus(buf[:len(buf)-1]); !started || final != nil {
		t.Fatalf("cut frame: started %v final %v", started, final)
	}
}
