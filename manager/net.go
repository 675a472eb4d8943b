// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/ipc"
	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

var binderType = reflect.TypeFor[binder]()

// Listen listens for manager clients on network "unix" (a socket path or
// an abstract "@name") or "tcp" ("host:port"). Every connection must pass
// the authkey handshake (Authkey is required): a client with a wrong
// key is refused before it can send a request. Serve the listener with
// Server.Serve.
//
// With TLS (tcp only) every connection runs a TLS handshake first and
// the authkey handshake and all requests inside TLS: use it whenever the
// network between clients and the server is not trusted, since the
// authkey handshake authenticates but does not encrypt. A client without
// TLS, or one that does not trust the server's certificate (or, with
// ClientAuth, whose certificate the server does not trust), gets nothing.
func Listen(network, address string, opts ...Option) (*ipc.Listener, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	if !o.hasAuthkey {
		return nil, errors.New("manager: Listen needs Authkey")
	}
	// A server holds many connections: its receivers park in the
	// netpoller rather than each holding a thread in poll(2).
	lopts := []ipc.ListenOption{ipc.Authkey(o.authkey), ipc.SameUser(),
		ipc.ConnOptions(ipc.MaxFrameSize(o.maxFrame), ipc.WaitInNetpoller())}
	if o.tls != nil {
		lopts = append(lopts, ipc.TLS(o.tls))
	}
	return ipc.Listen(network, address, lopts...)
}

// Connect connects to the manager server at address (see Listen) and runs
// the authkey handshake (Authkey is required), after a TLS handshake
// with TLS. A wrong key fails with an error that matches
// ipc.ErrAuthentication; a failed TLS handshake with one that says "tls
// handshake" and wraps crypto/tls's error.
func Connect(ctx context.Context, network, address string, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	if !o.hasAuthkey {
		return nil, errors.New("manager: Connect needs Authkey")
	}
	dopts := []ipc.ListenOption{ipc.Authkey(o.authkey), ipc.ConnOptions(ipc.MaxFrameSize(o.maxFrame))}
	if o.tls != nil {
		dopts = append(dopts, ipc.TLS(o.tls))
	}
	conn, err := ipc.Dial(ctx, network, address, dopts...)
	if err != nil {
		return nil, fmt.Errorf("manager: connect to %s %s: %w", network, address, err)
	}
	c := NewClient(conn, opts...)
	c.network, c.address = network, address
	if o.tls != nil {
		c.tls, c.tlsName = true, o.tls.ServerName
	}
	return c, nil
}

// ---------------------------------------------------------------- shared clients

// Proxies attached in another process (MultiprocAttach) share one Client
// per server, made on the first use of the first of them and closed when
// the last one is released.
var shared struct {
	mu sync.Mutex
	m  map[string]*sharedClient
}

type sharedClient struct {
	c *Client
	n int
}

func sharedKey(d *pb.HandleDesc) string {
	return fmt.Sprintf("%s\x00%s\x00%t\x00%s\x00%s", d.Network, d.Address, d.Tls, d.TlsServerName, d.Authkey)
}

func acquireShared(ctx context.Context, d *pb.HandleDesc) (*Client, error) {
	key := sharedKey(d)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if s := shared.m[key]; s != nil && s.c.Err() == nil {
		s.n++
		return s.c, nil
	}
	opts, err := attachTLS(d)
	if err != nil {
		return nil, err
	}
	c, err := Connect(ctx, d.Network, d.Address, append(opts, Authkey(d.Authkey))...)
	if err != nil {
		return nil, err
	}
	c.sharedKey = key
	if shared.m == nil {
		shared.m = map[string]*sharedClient{}
	}
	shared.m[key] = &sharedClient{c: c, n: 1}
	return c, nil
}

func releaseShared(c *Client) {
	shared.mu.Lock()
	s := shared.m[c.sharedKey]
	last := false
	if s != nil && s.c == c {
		s.n--
		if s.n <= 0 {
			delete(shared.m, c.sharedKey)
			last = true
		}
	}
	shared.mu.Unlock()
	if last {
		c.Close()
	}
}

// attach connects an attached handle and takes its reference.
func (h *handle) attach(ctx context.Context) (*Client, error) {
	c, err := acquireShared(ctx, h.target)
	if err != nil {
		return nil, err
	}
	_, err = c.do(ctx, &pb.Request{Op: &pb.Request_Refs{Refs: &pb.RefOps{Ops: []*pb.RefOp{{Object: h.id, Delta: 1, Secret: h.secret}}}}})
	if err != nil {
		releaseShared(c)
		return nil, err
	}
	h.cleanup = addCleanup(h, c)
	return c, nil
}

// addr returns where the handle's server is.
func (h *handle) addr() (network, address string, authkey []byte) {
	if h.target != nil {
		return h.target.Network, h.target.Address, h.target.Authkey
	}
	return h.c.network, h.c.address, h.c.authkey
}

// tlsInfo returns whether the handle's server takes only TLS, and the
// ServerName its certificate was checked against if one was set.
func (h *handle) tlsInfo() (bool, string) {
	if h.target != nil {
		return h.target.Tls, h.target.TlsServerName
	}
	return h.c.tls, h.c.tlsName
}

// ---------------------------------------------------------------- handle contract

// MultiprocHandle describes the proxy so that another process can use it
// (the process package calls it for a proxy argument of a child): no
// files, and a descriptor with the server's address, the authkey, the
// object's id and its capability secret (without which a connection
// cannot reach an object it did not create or receive; see PROTOCOL.md).
// The receiving process connects on its first call through
// the proxy and takes its own reference then; until then the object is
// kept alive only by this process's references, so keep this proxy until
// the child has used its copy (for example until the child has finished).
//
// Only proxies made through a Client that has an address (Connect, Start)
// can be handed over. When the server takes only TLS (TLS,
// ServerTLS), the descriptor says so, and the receiving process must
// have a client configuration (SetClientTLS) before its first call.
func (b *base) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	h, err := b.handle()
	if err != nil {
		return nil, nil, err
	}
	if h.released.Load() {
		return nil, nil, ErrReleased
	}
	network, address, authkey := h.addr()
	if address == "" {
		return nil, nil, errors.New("manager: a proxy of a Client without an address (NewClient) cannot be passed to another process")
	}
	tls, tlsName := h.tlsInfo()
	desc, err = proto.Marshal(&pb.HandleDesc{Network: network, Address: address, Authkey: authkey, Id: h.id, Typeid: h.typeid,
		Secret: h.secret, Tls: tls, TlsServerName: tlsName})
	return nil, desc, err
}

// MultiprocAttach makes the zero proxy b refer to the object that
// MultiprocHandle described in another process. It does not connect: the
// first call does.
func (b *base) MultiprocAttach(files []*os.File, desc []byte) error {
	for _, f := range files {
		f.Close()
	}
	d := new(pb.HandleDesc)
	if err := proto.Unmarshal(desc, d); err != nil {
		return fmt.Errorf("manager: bad proxy descriptor: %w", err)
	}
	if d.Address == "" || d.Id == 0 {
		return errors.New("manager: bad proxy descriptor: no address or object")
	}
	b.h = &handle{id: d.Id, typeid: d.Typeid, secret: d.Secret, owner: newOwner(), target: d}
	return nil
}
