// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/manager"
	"github.com/multiproc/multiproc/process"
	commonpb "github.com/multiproc/multiproc/proto/common/v1"
	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// rawClient speaks the manager protocol by hand, as a hostile client
// would: it can send any object id.
type rawClient struct {
	t    *testing.T
	conn *ipc.Conn
	id   uint64
}

func dialRaw(t *testing.T, ts *testServer) *rawClient {
	t.Helper()
	conn, err := ipc.Dial(ctxT(t), ts.network, ts.addr, ipc.Authkey(ts.key))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn}
}

// do sends req and returns its response.
func (r *rawClient) do(req *pb.Request) *pb.Response {
	r.t.Helper()
	ctx := ctxT(r.t)
	r.id++
	req.Id = r.id
	b, err := proto.Marshal(req)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.conn.SendBytes(ctx, b); err != nil {
		r.t.Fatal(err)
	}
	for {
		b, err := r.conn.RecvBytes(ctx)
		if err != nil {
			r.t.Fatal(err)
		}
		resp := new(pb.Response)
		if err := proto.Unmarshal(b, resp); err != nil {
			r.t.Fatal(err)
		}
		if resp.Id == req.Id {
			return resp
		}
	}
}

// isUnknownObject tells whether a wire error is manager.ErrUnknownObject.
func isUnknownObject(re *commonpb.RemoteError) bool {
	rep := remote.Decode(re)
	for _, c := range rep.Unwrap() {
		if errors.Is(c, manager.ErrUnknownObject) {
			return true
		}
	}
	return false
}

func strArg(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_String_{String_: s}} }

// Issue 14 item 5: object ids are not capabilities by themselves. A
// connection that did not create an object, was not handed a proxy to it
// and does not know its secret cannot reach it, however it names it:
// calls, get_value, refs{+1} (without or with a wrong secret), storing it
// in a container of its own, or passing it to a Condition. Each is told
// the object does not exist (unknown_object), as for an id no object has.
// With the secret, which a handed proxy carries, the claim works.
func TestObjectIDsAreNotCapabilities(t *testing.T) {
	ts := startServer(t, "unix")
	ctx := ctxT(t)
	d, err := manager.NewDict[string, string](ctx, ts.client)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "secret", "A's data"); err != nil {
		t.Fatal(err)
	}
	lock, err := manager.NewLock(ctx, ts.client)
	if err != nil {
		t.Fatal(err)
	}
	b := dialRaw(t, ts)
	id := d.ID()
	proxy := &pb.Value{Kind: &pb.Value_Proxy{Proxy: &pb.ProxyRef{Id: id, Typeid: "dict"}}}
	lockRef := &pb.Value{Kind: &pb.Value_Proxy{Proxy: &pb.ProxyRef{Id: lock.ID(), Typeid: "Lock"}}}
	attempts := []struct {
		name string
		req  *pb.Request
	}{
		{"call", &pb.Request{Op: &pb.Request_Call{Call: &pb.Call{Object: id, Method: "Get", Args: []*pb.Value{strArg("secret")}}}}},
		{"get_value", &pb.Request{Op: &pb.Request_GetValue{GetValue: &pb.GetValue{Object: id}}}},
		{"refs+1", &pb.Request{Op: &pb.Request_Refs{Refs: &pb.RefOps{Ops: []*pb.RefOp{{Object: id, Delta: 1}}}}}},
		{"refs+1 wrong secret", &pb.Request{Op: &pb.Request_Refs{Refs: &pb.RefOps{Ops: []*pb.RefOp{{Object: id, Delta: 1, Secret: make([]byte, 16)}}}}}},
		{"stored in a new list", &pb.Request{Op: &pb.Request_Create{Create: &pb.Create{Typeid: "list", Args: []*pb.Value{{Kind: &pb.Value_List{List: &pb.List{Items: []*pb.Value{proxy}}}}}}}}},
		{"Condition on the lock", &pb.Request{Op: &pb.Request_Create{Create: &pb.Create{Typeid: "Condition", Args: []*pb.Value{lockRef}}}}},
	}
	for _, a := range attempts {
		resp := b.do(a.req)
		if !isUnknownObject(resp.Error) {
			t.Errorf("%s on A's object %d: %v, want an unknown_object error", a.name, id, resp)
		}
	}
	// Nor does walking the id space find anything.
	for guess := uint64(1); guess <= 64; guess++ {
		resp := b.do(&pb.Request{Op: &pb.Request_Call{Call: &pb.Call{Object: guess, Method: "Len"}}})
		if !isUnknownObject(resp.Error) {
			t.Fatalf("call on guessed id %d: %v, want unknown_object", guess, resp)
		}
	}
	// B's own objects work, and stay B's.
	resp := b.do(&pb.Request{Op: &pb.Request_Create{Create: &pb.Create{Typeid: "dict"}}})
	mine := resp.GetValue().GetProxy()
	if resp.Error != nil || mine == nil || len(mine.Secret) != 16 {
		t.Fatalf("create: %v, want a proxy with a 16-byte secret", resp)
	}
	resp = b.do(&pb.Request{Op: &pb.Request_Call{Call: &pb.Call{Object: mine.Id, Method: "Len"}}})
	if resp.Error != nil {
		t.Fatalf("call on its own dict: %v", resp.Error)
	}
	if _, err := ts.client.Create(ctx, "list"); err != nil { // A cannot reach B's dict either
		t.Fatal(err)
	}
	if v, err := d.Get(ctx, "secret"); err != nil || v != "A's data" {
		t.Fatalf("A's dict: %q, %v", v, err)
	}
	// A proxy handed over carries the secret: with it, the claim works.
	_, desc, err := d.MultiprocHandle()
	if err != nil {
		t.Fatal(err)
	}
	hd := new(pb.HandleDesc)
	if err := proto.Unmarshal(desc, hd); err != nil {
		t.Fatal(err)
	}
	resp = b.do(&pb.Request{Op: &pb.Request_Refs{Refs: &pb.RefOps{Ops: []*pb.RefOp{{Object: id, Delta: 1, Secret: hd.Secret}}}}})
	if resp.Error != nil {
		t.Fatalf("claim with the handed secret: %v", resp.Error)
	}
	resp = b.do(&pb.Request{Op: &pb.Request_Call{Call: &pb.Call{Object: id, Method: "Get", Args: []*pb.Value{strArg("secret")}}}})
	if resp.Error != nil || resp.GetValue().GetString_() != "A's data" {
		t.Fatalf("Get after the claim: %v", resp)
	}
}

var childReadDict = process.Register("mgr.cap.read", func(ctx context.Context, d *manager.Dict[string, string], nested *manager.Dict[string, *manager.Dict[string, string]]) error {
	v, err := d.Get(ctx, "k")
	if err != nil {
		return err
	}
	if v != "v" {
		return fmt.Errorf("got %q, want v", v)
	}
	// A proxy received inside a value (from an object it reached through
	// a handed proxy) is reachable too.
	inner, err := nested.Get(ctx, "inner")
	if err != nil {
		return err
	}
	return inner.Set(ctx, "from child", "yes")
})

// A proxy passed to a child process still works under the capability
// model: the child's own connection claims it with the secret in the
// descriptor, and proxies it then receives in values are its own.
func TestHandedProxyWorksInChild(t *testing.T) {
	ts := startServer(t, "tcp")
	ctx := ctxT(t)
	d, err := manager.NewDict[string, string](ctx, ts.client)
	if err != nil {
		t.Fatal(err)
	}
	d.Set(ctx, "k", "v")
	inner, err := manager.NewDict[string, string](ctx, ts.client)
	if err != nil {
		t.Fatal(err)
	}
	nested, err := manager.NewDict[string, *manager.Dict[string, string]](ctx, ts.client)
	if err != nil {
		t.Fatal(err)
	}
	if err := nested.Set(ctx, "inner", inner); err != nil {
		t.Fatal(err)
	}
	runChild(t, childReadDict, d, nested)
	if v, err := inner.Get(ctx, "from child"); err != nil || v != "yes" {
		t.Fatalf("inner dict after the child: %q, %v", v, err)
	}
}
