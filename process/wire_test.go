// SPDX-License-Identifier: Apache-2.0

package process

import (
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/multiproc/multiproc/ipc"
	pb "github.com/multiproc/multiproc/proto/process/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
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

// FuzzStatus: whatever a (possibly broken) child wrote on its status
// socket, the parent's parser never panics and reads a valid stream back.
func FuzzStatus(f *testing.F) {
	errFrame, _ := proto.Marshal(&pb.ChildStatus{StartupError: "boom"})
	f.Add(append(append([]byte{}, startedFrame...), append([]byte{0, 0, 0, byte(len(errFrame))}, errFrame...)...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseStatus(b)
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
