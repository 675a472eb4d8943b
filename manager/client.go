// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/ipc"
	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// Client is a connection to a manager server. It carries every call of
// every proxy made through it, concurrently: requests carry ids, so many
// calls are in flight at once and a slow one (a blocked Queue.Get) does
// not hold up the others. A Client is safe for concurrent use by many
// goroutines.
//
// Closing the Client drops every reference it holds in the server, so
// objects that only its proxies referenced are freed.
type Client struct {
	conn    *ipc.Conn
	w       *ipc.Batcher
	opts    options
	network string // where the server listens ("" for a Client over a Pipe)
	address string
	authkey []byte
	tls     bool   // the server takes only TLS connections
	tlsName string // the ServerName the server's certificate was checked against, if set

	nextID atomic.Uint64

	mu    sync.Mutex
	calls map[uint64]*pendingCall
	decq  []*pb.RefOp // decrefs queued by garbage-collected proxies
	err   error       // set once the connection failed or closed
	done  chan struct{}

	// Responses are read by the callers themselves, one at a time: the
	// goroutine holding readMu reads and dispatches frames until its own
	// response arrives, then wakes a waiting caller to take over. A lone
	// caller thus reads its own response with no goroutine hand-off.
	readMu     sync.Mutex
	readerWake chan struct{}
	bg         sync.WaitGroup // readLoop and writeLoop goroutines
	// While readLoop runs (calls from several goroutines in flight),
	// callers queue their requests and writeLoop sends them, yielding
	// first so that one write carries the requests of many callers.
	bgActive bool          // guarded by mu
	wake     chan struct{} // cap 1: requests queued for writeLoop

	closeOnce sync.Once
	sharedKey string // non-empty for a client shared by attached proxies

	// serverEnded, set by Start, tells how the server process ended when
	// the connection is lost (nil if it did not end).
	serverEnded func() error
}

type pendingCall struct {
	ch chan *pb.Response
}

var callPool = sync.Pool{New: func() any { return &pendingCall{ch: make(chan *pb.Response, 1)} }}

// NewClient makes a Client over an established, authenticated connection
// (e.g. one end of an ipc.Pipe whose other end a Server serves). It takes
// ownership of conn. Proxies made through such a Client cannot be passed
// to other processes, since it has no address to give them; use Connect
// for that.
func NewClient(conn *ipc.Conn, opts ...Option) *Client {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	c := &Client{conn: conn, opts: o, calls: map[uint64]*pendingCall{},
		done: make(chan struct{}), readerWake: make(chan struct{}, 1), wake: make(chan struct{}, 1),
		authkey: o.authkey}
	c.w = ipc.NewBatcher(conn)
	return c
}

// Address returns the network and address of the server, as given to
// Connect ("" for a Client made by NewClient).
func (c *Client) Address() (network, address string) { return c.network, c.address }

// wait waits for pc's response, reading the connection itself when no
// other caller does. It returns ctx's error when ctx ends first (the call
// stays registered) and the connection's error when it fails.
func (c *Client) wait(ctx context.Context, pc *pendingCall) (*pb.Response, error) {
	for {
		select {
		case r := <-pc.ch:
			return r, nil
		default:
		}
		if c.readMu.TryLock() {
			r, err := c.readUntil(ctx, pc)
			c.mu.Lock()
			others := len(c.calls) > 0 && c.err == nil
			if others {
				c.bg.Add(2)
				c.bgActive = true
			}
			c.mu.Unlock()
			if others {
				stop := make(chan struct{})
				go c.writeLoop(stop)
				go c.readLoop(stop) // keeps readMu
			} else {
				c.readMu.Unlock()
				c.handOff()
			}
			return r, err
		}
		select {
		case r := <-pc.ch:
			return r, nil
		case <-c.readerWake:
			select {
			case r := <-pc.ch:
				c.handOff() // pass the turn on: someone else may need it
				return r, nil
			default:
			}
		case <-c.done:
			return nil, c.Err()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// handOff wakes a waiting caller to read, if calls are in flight.
func (c *Client) handOff() {
	c.mu.Lock()
	pending := len(c.calls) > 0
	c.mu.Unlock()
	if pending {
		select {
		case c.readerWake <- struct{}{}:
		default:
		}
	}
}

// readUntil reads and dispatches responses until pc's arrives. Called
// with readMu held.
func (c *Client) readUntil(ctx context.Context, pc *pendingCall) (*pb.Response, error) {
	for {
		select {
		case r := <-pc.ch:
			return r, nil
		default:
		}
		b, err := c.conn.RecvBytes(ctx)
		if err != nil {
			if ctx.Err() != nil && !errors.Is(err, ipc.ErrClosed) && !errors.Is(err, ipc.ErrBroken) {
				return nil, ctx.Err() // a cancelled receive loses nothing
			}
			c.fail(err)
			return nil, c.Err()
		}
		resp := new(pb.Response)
		if err := proto.Unmarshal(b, resp); err != nil {
			c.fail(fmt.Errorf("manager: undecodable response: %w", err))
			return nil, c.Err()
		}
		c.mu.Lock()
		p := c.calls[resp.Id]
		delete(c.calls, resp.Id)
		c.mu.Unlock()
		if p == pc {
			return resp, nil
		}
		if p != nil {
			p.ch <- resp
		} else {
			c.dropRefs(resp) // an abandoned call's
		}
	}
}

// readLoop reads for the callers while calls are in flight, so that
// under concurrency responses are dispatched by one goroutine instead of
// the reading turn passing from caller to caller. It is started with
// readMu held (handed over by the caller that started it) and ends when
// no call is left.
func (c *Client) readLoop(stopWriter chan struct{}) {
	defer c.bg.Done()
	for {
		c.mu.Lock()
		pending := len(c.calls) > 0
		c.mu.Unlock()
		if !pending {
			break
		}
		b, err := c.conn.RecvBytes(context.Background())
		if err != nil {
			c.fail(err)
			break
		}
		resp := new(pb.Response)
		if err := proto.Unmarshal(b, resp); err != nil {
			c.fail(fmt.Errorf("manager: undecodable response: %w", err))
			break
		}
		c.mu.Lock()
		p := c.calls[resp.Id]
		delete(c.calls, resp.Id)
		c.mu.Unlock()
		if p != nil {
			p.ch <- resp
		} else {
			c.dropRefs(resp) // an abandoned call's
		}
	}
	c.mu.Lock()
	c.bgActive = false
	c.mu.Unlock()
	close(stopWriter) // it sends what was queued before bgActive fell
	c.readMu.Unlock()
	c.handOff()
}

// writeLoop sends the requests queued while readLoop runs.
func (c *Client) writeLoop(stop chan struct{}) {
	defer c.bg.Done()
	for {
		select {
		case <-c.wake:
			runtime.Gosched() // let the other runnable callers queue theirs
			if err := c.w.Flush(); err != nil {
				c.fail(err)
			}
		case <-stop:
			if err := c.w.Flush(); err != nil {
				c.fail(err)
			}
			return
		}
	}
}

// fail marks the client broken: calls in flight and later calls get err.
func (c *Client) fail(err error) {
	var ended error
	if c.serverEnded != nil && !errors.Is(err, ipc.ErrClosed) && !errors.Is(err, ErrClosed) && c.Err() == nil {
		ended = c.serverEnded()
	}
	c.mu.Lock()
	if c.err == nil {
		switch {
		case errors.Is(err, ipc.ErrClosed):
			err = ErrClosed
		case ended != nil:
			err = fmt.Errorf("%w: connection to the server lost (the server process ended: %w): %w", ErrClosed, ended, err)
		default:
			err = fmt.Errorf("%w: connection to the server lost: %w", ErrClosed, err)
		}
		c.err = err
		close(c.done)
	}
	c.mu.Unlock()
	c.conn.Close()
}

// Close closes the connection. The server drops every reference the
// client held. Calls in flight return ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.fail(ErrClosed)
		c.bg.Wait()
	})
	return nil
}

// Err returns the error that broke the client's connection, or nil.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// oneWay sends a request that gets no response.
func (c *Client) oneWay(req *pb.Request) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	if err := c.w.Send(b); err != nil {
		c.fail(err)
		return c.Err()
	}
	return nil
}

// roundTrip sends req and waits for its response. When ctx ends first,
// the server is asked to cancel the call, and the call's own response
// decides the outcome: ctx's error if the cancellation took effect, the
// result if the call completed first (so nothing is lost or left held).
//
// detach is for calls of methods that may not honour cancellation (those
// of registered user types): when ctx ends, the call returns ctx.Err() at
// once instead of waiting for the server's answer.
func (c *Client) roundTrip(ctx context.Context, req *pb.Request, detach bool) (*pb.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id := c.nextID.Add(1)
	req.Id = id
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("manager: encode request: %w", err)
	}
	if int64(len(b)) > c.opts.maxFrame {
		return nil, fmt.Errorf("%w: request of %d bytes exceeds the maximum frame of %d", ErrBadRequest, len(b), c.opts.maxFrame)
	}
	pc := callPool.Get().(*pendingCall)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		callPool.Put(pc)
		return nil, err
	}
	c.calls[id] = pc
	var frames [][]byte
	if len(c.decq) > 0 {
		df, _ := proto.Marshal(&pb.Request{Op: &pb.Request_Refs{Refs: &pb.RefOps{Ops: c.decq}}})
		c.decq = nil
		frames = append(frames, df)
	}
	frames = append(frames, b)
	if c.bgActive {
		err := c.w.Enqueue(frames...)
		c.mu.Unlock()
		if err != nil {
			c.fail(err)
		}
		select {
		case c.wake <- struct{}{}:
		default:
		}
	} else {
		c.mu.Unlock()
		if err := c.w.Send(frames...); err != nil {
			c.fail(err)
		}
	}
	resp, err := c.wait(ctx, pc)
	if err != nil && ctx.Err() != nil && c.Err() == nil {
		// Cancelled: ask the server to stop the call, then take whatever
		// it answers, so that a call that completed is not lost.
		c.oneWay(&pb.Request{Op: &pb.Request_Cancel{Cancel: &pb.Cancel{Target: id}}})
		if detach {
			// A method that may ignore cancellation: do not wait for it.
			// Its late response is dropped (with the references it
			// carries) when it comes.
			c.abandon(id, pc)
			return nil, ctx.Err()
		}
		resp, err = c.wait(context.Background(), pc)
		if err == nil && resp.Error != nil && errors.Is(fromRemote(resp.Error), context.Canceled) {
			callPool.Put(pc)
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, c.abandon(id, pc)
	}
	callPool.Put(pc)
	return resp, nil
}

// abandon unregisters a call whose connection failed.
func (c *Client) abandon(id uint64, pc *pendingCall) error {
	c.mu.Lock()
	_, still := c.calls[id]
	delete(c.calls, id)
	err := c.err
	c.mu.Unlock()
	if still {
		callPool.Put(pc) // the reader can no longer deliver to it
	} else {
		// The reader is handing the response over: take it and give back
		// the references it carries.
		go func() { c.dropRefs(<-pc.ch) }()
	}
	return err
}

// dropRefs releases the references carried by a response no caller takes.
func (c *Client) dropRefs(r *pb.Response) {
	if r != nil && hasRefs(r.Value) {
		walkRefs(r.Value, func(ref *pb.ProxyRef) { c.queueDecref(ref.Id) })
	}
}

// do runs a request and returns its value or its error.
func (c *Client) do(ctx context.Context, req *pb.Request) (*pb.Value, error) {
	return c.doDetach(ctx, req, false)
}

func (c *Client) doDetach(ctx context.Context, req *pb.Request, detach bool) (*pb.Value, error) {
	resp, err := c.roundTrip(ctx, req, detach)
	if err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, fromRemote(resp.Error)
	}
	return resp.Value, nil
}

// Ping checks that the server answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.do(ctx, &pb.Request{Op: &pb.Request_Ping{Ping: &pb.Ping{}}})
	return err
}

// Shutdown asks the server to shut down; every client's connection ends.
func (c *Client) Shutdown(ctx context.Context) error {
	_, err := c.do(ctx, &pb.Request{Op: &pb.Request_Shutdown{Shutdown: &pb.Shutdown{}}})
	return err
}

// Types lists the type names the server can create.
func (c *Client) Types(ctx context.Context) ([]string, error) {
	v, err := c.do(ctx, &pb.Request{Op: &pb.Request_ListTypes{ListTypes: &pb.ListTypes{}}})
	if err != nil {
		return nil, err
	}
	return decodeAs[[]string](c, v)
}

// ObjectInfo describes one live object of a server.
type ObjectInfo struct {
	ID   uint64
	Type string
	Refs int64 // references from connections and from shared containers
}

// Objects lists the server's live objects.
func (c *Client) Objects(ctx context.Context) ([]ObjectInfo, error) {
	v, err := c.do(ctx, &pb.Request{Op: &pb.Request_ListObjects{ListObjects: &pb.ListObjects{}}})
	if err != nil {
		return nil, err
	}
	rows, err := decodeAs[[]map[string]any](c, v)
	if err != nil {
		return nil, err
	}
	out := make([]ObjectInfo, len(rows))
	for i, r := range rows {
		id, _ := r["id"].(int64)
		typ, _ := r["type"].(string)
		refs, _ := r["refs"].(int64)
		out[i] = ObjectInfo{ID: uint64(id), Type: typ, Refs: refs}
	}
	return out, nil
}

// create makes an object and returns a handle owning the first reference.
func (c *Client) create(ctx context.Context, typeid string, args ...any) (*handle, error) {
	vals, err := c.encodeArgs(args)
	if err != nil {
		return nil, err
	}
	v, err := c.do(ctx, &pb.Request{Op: &pb.Request_Create{Create: &pb.Create{Typeid: typeid, Args: vals}}})
	if err != nil {
		return nil, err
	}
	r, ok := v.GetKind().(*pb.Value_Proxy)
	if !ok {
		return nil, fmt.Errorf("manager: create %s: server returned a %s, not a reference", typeid, kindName(v))
	}
	return c.newHandle(r.Proxy), nil
}

func (c *Client) encodeArgs(args []any) ([]*pb.Value, error) {
	if len(args) > MaxArgs {
		return nil, fmt.Errorf("%w: %d arguments (max %d)", ErrBadArgs, len(args), MaxArgs)
	}
	e := encoder{c: c}
	vals := make([]*pb.Value, len(args))
	for i, a := range args {
		v, err := e.encode(a)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	return vals, nil
}

// Create makes an object of a registered type (RegisterType, or a
// built-in type name such as "dict") and returns a generic proxy to it.
func (c *Client) Create(ctx context.Context, typeid string, args ...any) (*Object, error) {
	h, err := c.create(ctx, typeid, args...)
	if err != nil {
		return nil, err
	}
	return &Object{base{h}}, nil
}

func (c *Client) queueDecref(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	if n := len(c.decq); n > 0 && c.decq[n-1].Object == id {
		c.decq[n-1].Delta--
		return
	}
	c.decq = append(c.decq, &pb.RefOp{Object: id, Delta: -1})
	if len(c.decq) >= MaxRefOps {
		ops := c.decq
		c.decq = nil
		go c.oneWay(&pb.Request{Op: &pb.Request_Refs{Refs: &pb.RefOps{Ops: ops}}})
	}
}

// FlushReleases sends the reference drops queued by proxies that were
// garbage collected without Release (they are otherwise sent with the
// next call).
func (c *Client) FlushReleases() error {
	c.mu.Lock()
	ops := c.decq
	c.decq = nil
	c.mu.Unlock()
	if len(ops) == 0 {
		return nil
	}
	return c.oneWay(&pb.Request{Op: &pb.Request_Refs{Refs: &pb.RefOps{Ops: ops}}})
}

// ---------------------------------------------------------------- handles

// handle is one counted reference to a shared object. A handle attached
// in another process (MultiprocAttach) connects on first use.
type handle struct {
	id     uint64
	typeid string
	secret []byte // the object's capability secret, for handing it over
	owner  uint64 // identifies the proxy for RLock/Condition ownership

	// c is fixed for a handle made by a Client. For an attached handle
	// (target set) it is nil until the first call connects, under mu.
	mu     sync.Mutex
	c      *Client
	target *pb.HandleDesc
	shared bool // c was taken from the shared clients for this handle

	released atomic.Bool
	cleanup  runtime.Cleanup
}

type cleanupArg struct {
	c  *Client
	id uint64
}

func newOwner() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1
}

func (c *Client) newHandle(r *pb.ProxyRef) *handle {
	h := &handle{id: r.Id, typeid: r.Typeid, secret: r.Secret, owner: newOwner(), c: c}
	h.cleanup = addCleanup(h, c)
	return h
}

// addCleanup makes the garbage collection of h drop its reference.
func addCleanup(h *handle, c *Client) runtime.Cleanup {
	return runtime.AddCleanup(h, func(a cleanupArg) { a.c.queueDecref(a.id) }, cleanupArg{c, h.id})
}

// conn returns the handle's client, connecting an attached handle (a
// failed connection is retried by the next call).
func (h *handle) conn(ctx context.Context) (*Client, error) {
	if h.released.Load() {
		return nil, ErrReleased
	}
	if h.target == nil {
		return h.c, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		c, err := h.attach(ctx)
		if err != nil {
			return nil, err
		}
		h.c, h.shared = c, true
	}
	return h.c, nil
}

// current returns the handle's client without connecting (nil for an
// attached handle not yet connected) and whether it is a shared one.
func (h *handle) current() (*Client, bool) {
	if h.target == nil {
		return h.c, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.c, h.shared
}

// release drops the reference (asynchronously, batched).
func (h *handle) release() {
	if h.released.Swap(true) {
		return
	}
	h.cleanup.Stop()
	if c, shared := h.current(); c != nil {
		c.queueDecref(h.id)
		if shared {
			releaseShared(c)
		}
	}
}

// Release drops the reference now and waits until the server has it.
func (h *handle) Release(ctx context.Context) error {
	if h.released.Swap(true) {
		return nil
	}
	h.cleanup.Stop()
	c, shared := h.current()
	if c == nil {
		return nil // never connected: nothing held
	}
	if shared {
		defer releaseShared(c)
	}
	_, err := c.do(ctx, &pb.Request{Op: &pb.Request_Refs{Refs: &pb.RefOps{Ops: []*pb.RefOp{{Object: h.id, Delta: -1}}}}})
	if errors.Is(err, ErrClosed) {
		return nil // the connection's end dropped it already
	}
	return err
}

func (h *handle) call(ctx context.Context, method string, args ...any) (*pb.Value, *Client, error) {
	c, err := h.conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	vals, err := c.encodeArgs(args)
	if err != nil {
		return nil, nil, err
	}
	ti := lookupType(h.typeid)
	detach := ti == nil || ti.custom
	v, err := c.doDetach(ctx, &pb.Request{Op: &pb.Request_Call{Call: &pb.Call{Object: h.id, Method: method, Args: vals, Owner: h.owner}}}, detach)
	return v, c, err
}

// ---------------------------------------------------------------- base proxy

// Proxy is implemented by every proxy type (*Dict, *List, *Lock, *Object,
// ...): a handle to one counted reference to a shared object.
type Proxy interface {
	// ID returns the object's id in its server.
	ID() uint64
	// TypeID returns the object's type name ("dict", "Lock", a
	// registered type's name).
	TypeID() string
	proxyHandle() *handle
}

type proxier = Proxy

// binder is implemented by pointers to proxy types.
type binder interface{ bind(*handle) }

// base is embedded in every proxy type. Its methods are promoted.
type base struct{ h *handle }

func (b *base) proxyHandle() *handle {
	if b == nil {
		return nil
	}
	return b.h
}

func (b *base) bind(h *handle) { b.h = h }

func (b *base) handle() (*handle, error) {
	if b == nil || b.h == nil {
		return nil, errors.New("manager: proxy is not bound to a shared object")
	}
	return b.h, nil
}

// ID returns the shared object's id in its server.
func (b *base) ID() uint64 {
	if b == nil || b.h == nil {
		return 0
	}
	return b.h.id
}

// TypeID returns the shared object's type name.
func (b *base) TypeID() string {
	if b == nil || b.h == nil {
		return ""
	}
	return b.h.typeid
}

// Release drops this proxy's reference to the shared object; the object
// is freed when no reference is left. Later calls through the proxy
// return ErrReleased. A proxy that is garbage collected without Release
// drops its reference too, with the client's next call. Release is
// idempotent.
func (b *base) Release(ctx context.Context) error {
	h, err := b.handle()
	if err != nil {
		return nil
	}
	return h.Release(ctx)
}

func (b *base) call(ctx context.Context, method string, args ...any) (*pb.Value, *Client, error) {
	h, err := b.handle()
	if err != nil {
		return nil, nil, err
	}
	return h.call(ctx, method, args...)
}

// callAs calls method and decodes its result into a T.
func callAs[T any](ctx context.Context, b *base, method string, args ...any) (T, error) {
	v, c, err := b.call(ctx, method, args...)
	if err != nil {
		var zero T
		return zero, err
	}
	return decodeAs[T](c, v)
}

// callNone calls a method whose result is ignored.
func callNone(ctx context.Context, b *base, method string, args ...any) error {
	_, _, err := b.call(ctx, method, args...)
	return err
}

// Object is a generic proxy: it calls any exposed method by name. Custom
// types (RegisterType) are reached through it.
type Object struct{ base }

// Call calls an exposed method and returns its result decoded into a
// natural Go value (nil, bool, int64, uint64, float64, string, []byte,
// []any, map[any]any, or *Object for a proxy). Use the generic Call
// function for a typed result.
func (o *Object) Call(ctx context.Context, method string, args ...any) (any, error) {
	return callAs[any](ctx, &o.base, method, args...)
}

// Call calls an exposed method of the object p refers to and decodes its
// result into an R (which may be a proxy type such as *Object or
// *Dict[string, int]).
func Call[R any](ctx context.Context, p Proxy, method string, args ...any) (R, error) {
	var zero R
	h := handleOf(p)
	if h == nil {
		return zero, errors.New("manager: proxy is not bound to a shared object")
	}
	v, c, err := h.call(ctx, method, args...)
	if err != nil {
		return zero, err
	}
	return decodeAs[R](c, v)
}

// GetValue returns a copy of the object's contents (a dict's map, a list's
// items, a Value's value, ...) decoded into a T.
func GetValue[T any](ctx context.Context, p Proxy) (T, error) {
	var zero T
	h := handleOf(p)
	if h == nil {
		return zero, errors.New("manager: proxy is not bound to a shared object")
	}
	c, err := h.conn(ctx)
	if err != nil {
		return zero, err
	}
	v, err := c.do(ctx, &pb.Request{Op: &pb.Request_GetValue{GetValue: &pb.GetValue{Object: h.id}}})
	if err != nil {
		return zero, err
	}
	return decodeAs[T](c, v)
}
