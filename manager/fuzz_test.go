// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/ipc"
	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// FuzzRequest feeds arbitrary bytes to the server's request dispatcher:
// it must never panic, never leave a blocking call running after the
// connection ends, and never leak an object past the connection.
func FuzzRequest(f *testing.F) {
	seed := func(r *pb.Request) {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(&pb.Request{Id: 1, Op: &pb.Request_Create{Create: &pb.Create{Typeid: "dict"}}})
	seed(&pb.Request{Id: 2, Op: &pb.Request_Create{Create: &pb.Create{Typeid: "list", Args: []*pb.Value{listValue([]*pb.Value{intValue(1), strValue("x")})}}}})
	seed(&pb.Request{Id: 3, Op: &pb.Request_Create{Create: &pb.Create{Typeid: "Barrier", Args: []*pb.Value{intValue(2)}}}})
	seed(&pb.Request{Id: 4, Op: &pb.Request_Call{Call: &pb.Call{Object: 1, Method: "Set", Args: []*pb.Value{strValue("k"), intValue(1)}}}})
	seed(&pb.Request{Id: 5, Op: &pb.Request_Call{Call: &pb.Call{Object: 1, Method: "Get", Args: []*pb.Value{refValue(&pb.ProxyRef{Id: 1})}}}})
	seed(&pb.Request{Op: &pb.Request_Refs{Refs: &pb.RefOps{Ops: []*pb.RefOp{{Object: 1, Delta: 1}, {Object: 1, Delta: -5}}}}})
	seed(&pb.Request{Id: 6, Op: &pb.Request_GetValue{GetValue: &pb.GetValue{Object: 1}}})
	seed(&pb.Request{Id: 7, Op: &pb.Request_ListObjects{ListObjects: &pb.ListObjects{}}})
	seed(&pb.Request{Op: &pb.Request_Cancel{Cancel: &pb.Cancel{Target: 3}}})
	seed(&pb.Request{Id: 8, Op: &pb.Request_Create{Create: &pb.Create{Typeid: "Queue", Args: []*pb.Value{{Kind: &pb.Value_Map{Map: &pb.Map{Entries: []*pb.Entry{{Key: nullValue}}}}}}}}})
	seed(&pb.Request{Id: 9, Op: &pb.Request_Publish{Publish: &pb.Publish{Name: "jobs", Object: 1}}})
	seed(&pb.Request{Id: 10, Op: &pb.Request_Publish{Publish: &pb.Publish{Name: "jobs", Object: 2, IfAbsent: true}}})
	seed(&pb.Request{Id: 11, Op: &pb.Request_Lookup{Lookup: &pb.Lookup{Name: "jobs"}}})
	seed(&pb.Request{Id: 12, Op: &pb.Request_Unpublish{Unpublish: &pb.Unpublish{Name: "jobs"}}})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})

	a, b, err := ipc.Pipe(true)
	if err != nil {
		f.Fatal(err)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			if _, err := b.RecvBytes(context.Background()); err != nil {
				return
			}
		}
	}()
	f.Cleanup(func() {
		a.Close()
		b.Close()
		<-drained
	})
	s := NewServer()
	f.Fuzz(func(t *testing.T, data []byte) {
		select {
		case <-s.Done(): // a Shutdown request closed it
			s = NewServer()
		default:
		}
		ctx, cancel := context.WithCancel(context.Background())
		sc := &sconn{s: s, c: a, ctx: ctx, cancel: cancel, refs: map[uint64]int64{},
			inflight: map[uint64]context.CancelFunc{}, held: map[*lockCore]struct{}{}}
		sc.w = ipc.NewBatcher(a)
		// A create first, so that calls on object ids have something to hit.
		s.handle(sc, mustMarshal(&pb.Request{Id: 1000, Op: &pb.Request_Create{Create: &pb.Create{Typeid: "dict"}}}))
		if resp := s.handle(sc, data); resp != nil {
			if _, err := proto.Marshal(resp); err != nil {
				t.Fatalf("response cannot be encoded: %v", err)
			}
		}
		sc.w.Flush()
		cancel()
		sc.release()
		if n := s.NumObjects(); n != 0 {
			t.Fatalf("%d objects left after the connection ended", n)
		}
	})
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzProxyDescriptor feeds arbitrary bytes to a proxy's MultiprocAttach,
// the decoder of what a parent hands its child for a proxy argument: it
// must never panic, and a descriptor it accepts names a server and an
// object.
func FuzzProxyDescriptor(f *testing.F) {
	for _, d := range []*pb.HandleDesc{
		{Network: "unix", Address: "/tmp/x/manager.sock", Authkey: []byte("k"), Id: 1, Typeid: "dict"},
		{Network: "tcp", Address: "127.0.0.1:1", Authkey: []byte("k"), Id: 7, Typeid: "Lock", Tls: true, TlsServerName: "localhost"},
		{Network: "unix", Id: 1},
	} {
		b, err := proto.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		var b base
		if err := b.MultiprocAttach(nil, data); err != nil {
			return
		}
		if b.h == nil || b.h.id == 0 || b.h.target == nil || b.h.target.Address == "" {
			t.Fatalf("accepted a descriptor without a server or an object: %+v", b.h)
		}
	})
}
