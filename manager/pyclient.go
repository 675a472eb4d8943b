// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/pickle"
	"github.com/multiproc/multiproc/ipc/remote"
)

// PyClient is a client of a manager served by CPython: a
// multiprocessing.managers.BaseManager or SyncManager started with
// start() or get_server().serve_forever(), on a unix socket or TCP. It
// speaks CPython's own manager protocol (pickled request tuples, see
// PROTOCOL.md, "CPython managers"), so the Python side needs nothing but
// its standard library.
//
// As CPython's own client does, a PyClient opens a short connection for
// each server request (create, incref, decref, shutdown) and keeps method
// connections for calls on objects: one per call in flight, reused when
// the call ends. A PyClient is safe for concurrent use.
type PyClient struct {
	network, address string
	authkey          []byte
	codec            *pickle.Codec
	maxFrame         int64
	log              *zap.Logger

	mu     sync.Mutex
	idle   []*ipc.Conn         // method connections between calls
	pins   map[*pyPin]struct{} // connections reserved for one object each
	closed bool
}

// maxIdlePy bounds the method connections a PyClient keeps between calls.
const maxIdlePy = 8

// ConnectPython connects to a CPython manager at address ("unix" path or
// "tcp" host:port) with its authkey (Authkey is required; a manager
// started without one uses its process's authkey, which the Python side
// can print as bytes(current_process().authkey)). Like CPython's
// BaseManager.connect it checks the server with a 'dummy' request. A wrong
// key fails with an error that matches ipc.ErrAuthentication. MaxFrameSize
// and Logger apply; other options are ignored.
func ConnectPython(ctx context.Context, network, address string, opts ...Option) (*PyClient, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	if !o.hasAuthkey {
		return nil, errors.New("manager: ConnectPython needs Authkey")
	}
	c := &PyClient{network: network, address: address, authkey: o.authkey,
		codec: pickle.New(pickle.MaxSize(int(min(o.maxFrame, 1<<30)))), maxFrame: o.maxFrame,
		log: o.log.Named("pyclient").With(zap.String("address", address))}
	if _, err := c.serverCall(ctx, "dummy"); err != nil {
		return nil, err
	}
	return c, nil
}

// dial opens and authenticates one connection to the server.
func (c *PyClient) dial(ctx context.Context) (*ipc.Conn, error) {
	conn, err := ipc.Dial(ctx, c.network, c.address, ipc.Authkey(c.authkey),
		ipc.ConnOptions(ipc.MaxFrameSize(c.maxFrame), ipc.UseCodec(c.codec)))
	if err != nil {
		return nil, fmt.Errorf("manager: connect to python manager at %s %s: %w", c.network, c.address, err)
	}
	return conn, nil
}

// request sends one request tuple on conn and returns the reply's
// payload, or the error the reply carries.
func (c *PyClient) request(ctx context.Context, conn *ipc.Conn, ident any, method string, args []any, kwds map[string]any) (any, error) {
	if args == nil {
		args = []any{}
	}
	if kwds == nil {
		kwds = map[string]any{}
	}
	if err := conn.Send(ctx, pickle.Tuple{ident, method, pickle.Tuple(args), kwds}); err != nil {
		return nil, fmt.Errorf("manager: python %s: %w", method, err)
	}
	var reply any
	if err := conn.Recv(ctx, &reply); err != nil {
		return nil, fmt.Errorf("manager: python %s: %w", method, err)
	}
	t, ok := reply.(pickle.Tuple)
	if !ok || len(t) != 2 {
		return nil, fmt.Errorf("%w: python %s: reply %s is not a (kind, result) pair", ErrBadReply, method, pickle.Repr(reply))
	}
	kind, _ := t[0].(string)
	switch kind {
	case "#RETURN":
		return t[1], nil
	case "#PROXY":
		return c.proxyReply(ctx, method, t[1])
	}
	return nil, pyError(method, kind, t[1])
}

// serverCall makes one server-level request on a fresh connection, as
// CPython's dispatch(conn, None, ...) does.
func (c *PyClient) serverCall(ctx context.Context, method string, args ...any) (any, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return c.request(ctx, conn, nil, method, args, nil)
}

// methodConn returns a method connection: an idle one, or a new one that
// has made the 'accept_connection' request.
func (c *PyClient) methodConn(ctx context.Context) (*ipc.Conn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(c.idle); n > 0 {
		conn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return conn, nil
	}
	c.mu.Unlock()
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := c.request(ctx, conn, nil, "accept_connection", []any{"MainProcess"}, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// putConn returns a method connection after a call that left it in step.
func (c *PyClient) putConn(conn *ipc.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || len(c.idle) >= maxIdlePy {
		conn.Close()
		return
	}
	c.idle = append(c.idle, conn)
}

// call calls a method of the object ident on a method connection. A call
// cut short (cancelled context, broken connection) closes its connection,
// since the server's reply would arrive out of step.
func (c *PyClient) call(ctx context.Context, ident, method string, args []any, kwds map[string]any) (any, error) {
	conn, err := c.methodConn(ctx)
	if err != nil {
		return nil, err
	}
	v, err := c.request(ctx, conn, ident, method, args, kwds)
	var re *RemoteError
	if err == nil || errors.As(err, &re) {
		c.putConn(conn)
	} else {
		c.log.Debug("method connection dropped", zap.String("method", method), zap.Error(err))
		conn.Close()
	}
	return v, err
}

// Close closes the client's connections; calls in flight end on their
// own. Objects are not released (the server keeps them until it shuts
// down, as when a CPython client exits without releasing): Release them
// first. After Close, every call, Release included, returns ErrClosed.
// Close is idempotent.
func (c *PyClient) Close() error {
	c.mu.Lock()
	idle, pins := c.idle, c.pins
	c.idle, c.pins, c.closed = nil, nil, true
	c.mu.Unlock()
	for _, conn := range idle {
		conn.Close()
	}
	for p := range pins {
		p.close()
	}
	return nil
}

// Shutdown asks the server to stop (CPython's manager.shutdown() request)
// and closes the client.
func (c *PyClient) Shutdown(ctx context.Context) error {
	_, err := c.serverCall(ctx, "shutdown")
	c.Close()
	return err
}

// NumberOfObjects returns how many objects the server holds references
// for (CPython's number_of_objects request).
func (c *PyClient) NumberOfObjects(ctx context.Context) (int, error) {
	v, err := c.serverCall(ctx, "number_of_objects")
	if err != nil {
		return 0, err
	}
	var n int
	if err := c.codec.Convert(v, &n); err != nil {
		return 0, fmt.Errorf("%w: number_of_objects: %w", ErrBadReply, err)
	}
	return n, nil
}

// Create creates an object of a registered typeid in the server, with
// positional arguments (CPython's manager.<typeid>(*args)): for a
// SyncManager, "dict", "list", "Queue", "Namespace", "Value" and the rest.
// The returned object holds the reference the create made; Release it.
func (c *PyClient) Create(ctx context.Context, typeid string, args ...any) (*PyObject, error) {
	return c.CreateKw(ctx, typeid, args, nil)
}

// CreateKw is Create with keyword arguments.
func (c *PyClient) CreateKw(ctx context.Context, typeid string, args []any, kwds map[string]any) (*PyObject, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	v, err := c.request(ctx, conn, nil, "create", append([]any{typeid}, args...), kwds)
	if err != nil {
		return nil, err
	}
	var r struct {
		ID      string
		Exposed []string
	}
	if err := c.codec.Convert(v, &r); err != nil {
		return nil, fmt.Errorf("%w: create %s: %w", ErrBadReply, typeid, err)
	}
	return c.object(pickle.Token{TypeID: typeid, Address: c.pyAddress(), ID: r.ID}, r.Exposed), nil
}

func (c *PyClient) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *PyClient) object(t pickle.Token, exposed []string) *PyObject {
	return &PyObject{c: c, token: t, exposed: exposed}
}

// proxyReply turns a '#PROXY' reply, (exposed, Token), into a PyObject
// that holds the reference the server made for it.
func (c *PyClient) proxyReply(ctx context.Context, method string, v any) (any, error) {
	var r struct {
		Exposed []string
		Token   pickle.Token
	}
	if err := c.codec.Convert(v, &r); err != nil {
		return nil, fmt.Errorf("%w: %s: #PROXY %s: %w", ErrBadReply, method, pickle.Repr(v), err)
	}
	r.Token.Address = c.pyAddress() // as CPython's client does: the server may not know its own
	return c.object(r.Token, r.Exposed), nil
}

// pyAddress is the server's address as CPython writes it in a Token: a
// path, or a (host, port) tuple.
func (c *PyClient) pyAddress() any {
	if c.network == "unix" {
		return c.address
	}
	host, port, err := net.SplitHostPort(c.address)
	if err != nil {
		return c.address
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return c.address
	}
	return pickle.Tuple{host, p}
}

// PyObject is a reference to an object in a CPython manager: its Token
// and the methods the server exposes for it. Its methods are safe for
// concurrent use.
type PyObject struct {
	c        *PyClient
	token    pickle.Token
	exposed  []string
	released atomic.Bool
	pin      *pyPin // for objects bound to the server thread that serves a connection (RLock)
}

// Token returns the object's Token (typeid, address, id).
func (o *PyObject) Token() pickle.Token { return o.token }

// Exposed returns the names of the methods the server lets clients call.
func (o *PyObject) Exposed() []string { return slices.Clone(o.exposed) }

// Call calls a method with positional arguments and returns its result
// as the pickle package decodes it (a method that returns an object of a
// registered typeid, such as a dict's __iter__, returns a *PyObject).
// A Python exception raised by the method is a *RemoteError that matches
// the manager's sentinels (KeyError: ErrKeyNotFound, IndexError:
// ErrIndexOutOfRange, queue.Empty: ErrEmpty, queue.Full: ErrFull,
// TypeError: ErrTypeError) and, with errors.As, the *pickle.Exception.
// A method the server does not expose is ErrUnknownMethod.
func (o *PyObject) Call(ctx context.Context, method string, args ...any) (any, error) {
	return o.CallKw(ctx, method, args, nil)
}

// CallKw is Call with keyword arguments.
func (o *PyObject) CallKw(ctx context.Context, method string, args []any, kwds map[string]any) (any, error) {
	if o.released.Load() {
		return nil, ErrReleased
	}
	if o.pin != nil {
		return o.pin.call(ctx, o.c, o.token.ID, method, args, kwds)
	}
	return o.c.call(ctx, o.token.ID, method, args, kwds)
}

// CallInto is Call with the result stored into out, a non-nil pointer,
// as pickle.Unmarshal would.
func (o *PyObject) CallInto(ctx context.Context, out any, method string, args ...any) error {
	v, err := o.Call(ctx, method, args...)
	if err != nil {
		return err
	}
	if err := o.c.codec.Convert(v, out); err != nil {
		return fmt.Errorf("manager: python %s: %w", method, err)
	}
	return nil
}

// Value returns a copy of the object (CPython's proxy._getvalue()).
func (o *PyObject) Value(ctx context.Context) (any, error) {
	return o.Call(ctx, "#GETVALUE")
}

// Release drops the object's reference (a 'decref' request); the server
// frees the object when no reference is left. Later calls return
// ErrReleased. Release is idempotent.
func (o *PyObject) Release(ctx context.Context) error {
	if o.released.Swap(true) {
		return nil
	}
	if o.pin != nil {
		o.pin.close()
		o.c.dropPin(o.pin)
	}
	_, err := o.c.serverCall(ctx, "decref", o.token.ID)
	return err
}

// ErrBadReply is a reply from a CPython manager that is not what its
// protocol promises.
var ErrBadReply = errors.New("manager: bad reply from python manager")

// pyError turns an '#ERROR', '#TRACEBACK' or '#UNSERIALIZABLE' reply into
// a *RemoteError.
func pyError(method, kind string, payload any) error {
	switch kind {
	case "#ERROR":
		exc, ok := payload.(*pickle.Exception)
		if !ok {
			return fmt.Errorf("%w: %s: #ERROR with a %s", ErrBadReply, method, pickle.Repr(payload))
		}
		var chain error = exc
		if s := pySentinel(exc.Name); s != nil {
			chain = fmt.Errorf("%w: %w", s, exc)
		}
		rep := remote.ReportOf(chain)
		rep.Type, rep.Message = "python "+exc.Module+"."+exc.Name, exc.Error()
		return &RemoteError{Report: rep}
	case "#TRACEBACK", "#UNSERIALIZABLE":
		text, ok := payload.(string)
		if !ok {
			return fmt.Errorf("%w: %s: %s with a %s", ErrBadReply, method, kind, pickle.Repr(payload))
		}
		var chain error = errors.New(text)
		if strings.Contains(text, "is not in exposed=") || strings.Contains(text, "unrecognized") {
			chain = fmt.Errorf("%w: %w", ErrUnknownMethod, chain)
		}
		if kind == "#UNSERIALIZABLE" {
			text = "Unserializable message: " + text
		}
		rep := remote.ReportOf(chain)
		rep.Type, rep.Message = "python multiprocessing.managers.RemoteError", text
		return &RemoteError{Report: rep}
	}
	return fmt.Errorf("%w: %s: unknown reply kind %q", ErrBadReply, method, kind)
}

func pySentinel(name string) error {
	switch name {
	case "KeyError":
		return ErrKeyNotFound
	case "IndexError":
		return ErrIndexOutOfRange
	case "Empty":
		return ErrEmpty
	case "Full":
		return ErrFull
	case "TypeError":
		return ErrTypeError
	}
	return nil
}
