// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/multiproc/multiproc/internal/base/text"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/pickle"
	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// CPython clients of a Go Server (PROTOCOL.md, "CPython clients of a Go
// server"). ServePython serves CPython's manager protocol on a listener
// of its own; the objects are the Server's, shared with Go clients.
//
// Each accepted connection is an sconn (in s.conns, counted in s.wg, so
// Close ends it) that serves one server request, or, after
// accept_connection, method calls one at a time as a CPython server
// thread does. Locks acquired through a method connection are held by
// that sconn (owner 1): when the Python thread's connection ends, its
// process died included, they are released and the next acquirer is told
// ErrOwnerDead. References taken by incref and create are counted in one
// ledger for all CPython clients, as CPython's server counts them: a
// Python client killed without decref leaves its references behind until
// the server closes, as with CPython's own server.

// pyState is the CPython side of a Server.
type pyState struct {
	once   sync.Once
	ledger *sconn // holds the references CPython clients took
	codec  *pickle.Codec
}

func (s *Server) pyInit() *pyState {
	s.py.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.py.ledger = &sconn{s: s, ctx: ctx, cancel: cancel, refs: map[uint64]int64{},
			inflight: map[uint64]context.CancelFunc{}, held: map[*lockCore]struct{}{}}
		s.py.codec = pickle.New(pickle.MaxSize(int(min(s.opts.maxFrame, 1<<30))))
	})
	return &s.py
}

// ServePython accepts connections from l and serves CPython manager
// clients on them: BaseManager(address, authkey).connect() and
// SyncManager's typeids (see PROTOCOL.md). l must run the authkey
// handshake (Listen does, as CPython's connection.Client expects).
// Objects are the server's: a Go client and a Python client reach the
// same object (PythonIdent). ServePython returns as Serve does.
func (s *Server) ServePython(ctx context.Context, l Listener) error {
	s.pyInit()
	return s.serveListener(ctx, l, s.startPyConn)
}

func (s *Server) startPyConn(c *ipc.Conn) bool {
	sc := s.newConn(c)
	if sc == nil {
		c.Close()
		return false
	}
	go s.servePy(sc)
	return true
}

// Python reply kinds.
const (
	pyReturn    = "#RETURN"
	pyErrorKind = "#ERROR"
	pyTraceback = "#TRACEBACK"
	pyUnser     = "#UNSERIALIZABLE"
	pyProxy     = "#PROXY"
)

// pyRequest is a decoded (ident, methodname, args, kwds) tuple.
type pyRequest struct {
	ident  any
	method string
	args   pickle.Tuple
	kwds   *pickle.Dict
}

func (s *Server) decodePy(b []byte) (*pyRequest, error) {
	v, err := s.py.codec.Decode(b)
	if err != nil {
		return nil, err
	}
	t, ok := v.(pickle.Tuple)
	if !ok || len(t) != 4 {
		return nil, fmt.Errorf("%w: a request is a tuple (ident, methodname, args, kwds), not %s", ErrBadRequest, truncate(pickle.Repr(v)))
	}
	r := &pyRequest{ident: t[0]}
	if r.method, ok = t[1].(string); !ok {
		return nil, fmt.Errorf("%w: methodname is a str", ErrBadRequest)
	}
	switch a := t[2].(type) {
	case pickle.Tuple:
		r.args = a
	case []any:
		r.args = a
	default:
		return nil, fmt.Errorf("%w: args is a tuple", ErrBadRequest)
	}
	switch k := t[3].(type) {
	case *pickle.Dict:
		r.kwds = k
	case nil:
	default:
		return nil, fmt.Errorf("%w: kwds is a dict", ErrBadRequest)
	}
	if len(r.args) > MaxArgs || r.kwds.Len() > MaxArgs {
		return nil, fmt.Errorf("%w: more than %d arguments", ErrBadRequest, MaxArgs)
	}
	return r, nil
}

// sendPy writes one (kind, result) reply. A result that cannot be
// pickled or framed becomes '#UNSERIALIZABLE'.
func (s *Server) sendPy(sc *sconn, kind string, result any) error {
	b, err := s.py.codec.Marshal(pickle.Tuple{kind, result})
	if err == nil && int64(len(b)) > s.opts.maxFrame {
		err = fmt.Errorf("manager: reply of %d bytes exceeds the maximum frame of %d", len(b), s.opts.maxFrame)
	}
	if err != nil {
		b, _ = s.py.codec.Marshal(pickle.Tuple{pyUnser, err.Error()})
	}
	return sc.c.SendBytes(context.Background(), b)
}

func (s *Server) servePy(sc *sconn) {
	defer s.wg.Done()
	defer sc.close()
	b, err := sc.c.RecvBytes(context.Background())
	if err != nil {
		return
	}
	req, err := s.decodePy(b)
	if err != nil {
		s.opts.log.Info("manager: python request refused", zap.Error(err))
		s.sendPy(sc, pyTraceback, tracebackText(err))
		return
	}
	if req.method == "accept_connection" {
		if s.sendPy(sc, pyReturn, nil) != nil {
			return
		}
		s.servePyCalls(sc)
		return
	}
	if req.method == "shutdown" {
		s.sendPy(sc, pyReturn, nil)
		go s.Close()
		return
	}
	v, err := s.pyServerRequest(req)
	if err != nil {
		s.sendPy(sc, pyTraceback, tracebackText(err))
		return
	}
	s.sendPy(sc, pyReturn, v)
}

// tracebackText is the text of a '#TRACEBACK' reply, which CPython's
// client raises as RemoteError(text). It is valid UTF-8 (a Python str)
// whatever bytes the error quotes.
func tracebackText(err error) string {
	return text.Valid("Traceback (Go manager):\n" + err.Error() + "\n")
}

// pyServerRequest runs a request made with ident None.
func (s *Server) pyServerRequest(req *pyRequest) (any, error) {
	switch req.method {
	case "dummy":
		return nil, nil
	case "create":
		if len(req.args) < 1 {
			return nil, fmt.Errorf("%w: create takes a typeid", ErrBadArgs)
		}
		typeid, ok := req.args[0].(string)
		if !ok {
			return nil, fmt.Errorf("%w: typeid is a str", ErrBadArgs)
		}
		e, err := s.pyCreate(typeid, req.args[1:], req.kwds)
		if err != nil {
			return nil, err
		}
		return pickle.Tuple{pyIdent(e), pyExposed(e)}, nil
	case "incref", "decref":
		if len(req.args) != 1 {
			return nil, fmt.Errorf("%w: %s takes an id", ErrBadArgs, req.method)
		}
		ident, _ := req.args[0].(string)
		e, err := s.pyResolve(ident)
		if err != nil {
			return nil, err
		}
		return nil, s.pyRef(e, req.method == "incref")
	case "get_methods":
		if len(req.args) != 1 {
			return nil, fmt.Errorf("%w: get_methods takes a Token", ErrBadArgs)
		}
		tok, ok := req.args[0].(*pickle.Token)
		if !ok {
			return nil, fmt.Errorf("%w: get_methods takes a Token", ErrBadArgs)
		}
		e, err := s.pyResolve(tok.ID)
		if err != nil {
			return nil, err
		}
		return pyExposed(e), nil
	case "number_of_objects":
		return int64(s.NumObjects()), nil
	case "debug_info":
		var b strings.Builder
		for _, o := range s.pyObjects() {
			fmt.Fprintf(&b, "  %d:       refcount=%d\n    %s\n", o.id, o.refs, o.ti.name)
		}
		return b.String(), nil
	}
	return nil, fmt.Errorf("%w: %q unrecognized", ErrBadRequest, truncate(req.method))
}

func (s *Server) pyObjects() []*entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*entry, 0, len(s.objs))
	for _, e := range s.objs {
		out = append(out, e)
	}
	return out
}

// pyIdent is an object's id as CPython clients see it: its id and its
// capability secret, "<id hex>.<secret hex>". CPython's client treats it
// as an opaque string (its own server uses '%x' % id(obj)).
func pyIdent(e *entry) string {
	return strconv.FormatUint(e.id, 16) + "." + hex.EncodeToString(e.secret)
}

// PythonIdent returns the id a CPython client uses for the object p
// refers to (Token.id), for a server that also serves Python clients
// (ServePython): with it, a Python client reaches an object a Go client
// made. The id carries the object's capability secret: whoever has it
// can use the object.
func PythonIdent(p Proxy) (string, error) {
	h := handleOf(p)
	if h == nil || len(h.secret) == 0 {
		return "", fmt.Errorf("manager: %T is not bound to a shared object", p)
	}
	return strconv.FormatUint(h.id, 16) + "." + hex.EncodeToString(h.secret), nil
}

// pyResolve finds the object a Python ident names, checking its secret.
// A wrong or missing secret is reported as an unknown object.
func (s *Server) pyResolve(ident string) (*entry, error) {
	idHex, secHex, ok := strings.Cut(ident, ".")
	id, err := strconv.ParseUint(idHex, 16, 64)
	sec, err2 := hex.DecodeString(secHex)
	if !ok || err != nil || err2 != nil {
		return nil, errorf(ErrUnknownObject, "no object %q", truncate(ident))
	}
	s.mu.Lock()
	e := s.objs[id]
	s.mu.Unlock()
	if e == nil || !hmac.Equal(sec, e.secret) {
		return nil, errorf(ErrUnknownObject, "no object %q", truncate(ident))
	}
	return e, nil
}

// pyRef takes or drops one of the CPython clients' references.
func (s *Server) pyRef(e *entry, incr bool) error {
	led := s.py.ledger
	s.mu.Lock()
	if s.objs[e.id] != e {
		s.mu.Unlock()
		return errorf(ErrUnknownObject, "no object %d", e.id)
	}
	if incr {
		s.grantLocked(led, e, 1)
		s.mu.Unlock()
		return nil
	}
	if led.refs[e.id] <= 0 {
		s.mu.Unlock()
		return fmt.Errorf("%w: object %d has no reference held by python clients", ErrBadRequest, e.id)
	}
	led.refs[e.id]--
	if led.refs[e.id] == 0 {
		delete(led.refs, e.id)
	}
	dead := s.decrefLocked(e.id, 1, nil)
	s.mu.Unlock()
	s.freeEntries(dead)
	return nil
}

// pyCreate creates an object for a 'create' request; the CPython
// clients' ledger holds its first reference.
func (s *Server) pyCreate(typeid string, args pickle.Tuple, kwds *pickle.Dict) (e *entry, err error) {
	pt := pyTypes[typeid]
	if pt == nil {
		if e, ok := s.pyNamed(typeid, args, kwds); ok {
			return e, nil
		}
		if ti := lookupType(typeid); ti != nil && ti.custom {
			pt = pyCustom
		} else {
			return nil, errorf(ErrUnknownType, "%q", truncate(typeid))
		}
	}
	goTypeid := typeid
	if pt.goType != "" {
		goTypeid = pt.goType
	}
	var vals []*pb.Value
	if pt.create != nil {
		vals, err = pt.create(args, kwds)
	} else {
		vals, err = pyCustomArgs(args, kwds)
	}
	if err != nil {
		return nil, err
	}
	led := s.py.ledger
	if err := checkArgs(s, led, vals); err != nil {
		return nil, err
	}
	ti := lookupType(goTypeid)
	if ti == nil {
		return nil, errorf(ErrUnknownType, "%q", typeid)
	}
	cc := &callCtx{ctx: led.ctx, sc: led, s: s}
	defer recoverTo(&err, nil)
	obj, err := ti.create(cc, vals)
	if err != nil {
		return nil, err
	}
	return s.pyAdd(ti, obj)
}

// pyNamed serves CPython's remote-manager recipe: a typeid registered
// without a callable on the client (register('get_queue')) is the name
// of an object the server publishes (names.go). Creating it gives the
// CPython clients' ledger a reference to that object; the name keeps its
// own. A create with arguments is not a lookup.
func (s *Server) pyNamed(name string, args pickle.Tuple, kwds *pickle.Dict) (*entry, bool) {
	if len(args) > 0 || kwds.Len() > 0 {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.namedLocked(name)
	if e == nil {
		return nil, false
	}
	s.grantLocked(s.py.ledger, e, 1)
	return e, true
}

// pyAdd registers an object made for CPython clients, the ledger holding
// its first reference.
func (s *Server) pyAdd(ti *typeInfo, obj any) (*entry, error) {
	ref, err := s.add(s.py.ledger, ti, obj)
	if err != nil {
		if f, ok := obj.(freer); ok {
			s.dropValue(f.free()...)
		}
		return nil, err
	}
	s.mu.Lock()
	e := s.objs[ref.Id]
	s.mu.Unlock()
	if e == nil {
		return nil, errorf(ErrUnknownObject, "no object %d", ref.Id)
	}
	return e, nil
}

// servePyCalls serves (ident, methodname, args, kwds) requests on a
// method connection, one at a time, until it ends.
func (s *Server) servePyCalls(sc *sconn) {
	for {
		b, err := sc.c.RecvBytes(context.Background())
		if err != nil {
			return
		}
		kind, result := s.pyCall(sc, b)
		if err := s.sendPy(sc, kind, result); err != nil {
			return
		}
	}
}

// pyCall runs one method call and returns the reply.
func (s *Server) pyCall(sc *sconn, b []byte) (kind string, result any) {
	req, err := s.decodePy(b)
	if err != nil {
		s.opts.log.Info("manager: python call refused", zap.Error(err))
		return pyTraceback, tracebackText(err)
	}
	ident, _ := req.ident.(string)
	e, err := s.pyResolve(ident)
	if err != nil {
		return pyTraceback, tracebackText(err)
	}
	pt := pyTypeOf(e.ti)
	var m pyMethod
	if pt != nil {
		m = pt.methods[req.method]
	}
	if m == nil {
		switch req.method {
		case "#GETVALUE":
			m = pyGetValue
		case "__str__", "__repr__":
			m = pyStr
		}
	}
	if m == nil && pt == pyCustom {
		if gm := e.ti.methods[req.method]; gm != nil {
			m = pyCustomMethod(gm)
		}
	}
	if m == nil {
		return pyTraceback, tracebackText(fmt.Errorf("%w: AttributeError: method %q of %q object is not in exposed=%s",
			ErrUnknownMethod, truncate(req.method), e.ti.name, pickle.Repr(pyExposed(e))))
	}
	ctx, cancel := context.WithCancel(sc.ctx)
	defer cancel()
	pc := &pyCallCtx{cc: &callCtx{ctx: ctx, sc: sc, owner: 1, s: s}, e: e, req: req, cancel: cancel}
	defer func() {
		if r := recover(); r != nil {
			kind, result = pyTraceback, tracebackText(fmt.Errorf("manager: %s.%s panicked: %v\n%s", e.ti.name, truncate(req.method), r, debug.Stack()))
		}
	}()
	res, err := m(pc)
	if err != nil {
		return pyErrorReply(err)
	}
	if p, ok := res.(pyProxyResult); ok {
		return pyProxy, pickle.Tuple{pyExposed(p.e), &pickle.Token{TypeID: pyTypeid(p.e), Address: nil, ID: pyIdent(p.e)}}
	}
	return pyReturn, res
}

// pyProxyResult is a method result that is a new object: a '#PROXY'
// reply (the ledger holds the reference the client adopts).
type pyProxyResult struct{ e *entry }

// pyCallCtx is what a Python method implementation sees.
type pyCallCtx struct {
	cc     *callCtx
	e      *entry
	req    *pyRequest
	cancel context.CancelFunc
}

// goCall runs the Go method name of the object with args.
func (pc *pyCallCtx) goCall(name string, args ...*pb.Value) (*pb.Value, error) {
	m := pc.e.ti.methods[name]
	if m == nil {
		return nil, errorf(ErrUnknownMethod, "%s has no method %q", pc.e.ti.name, name)
	}
	if err := checkArgs(pc.cc.s, pc.cc.sc, args); err != nil {
		return nil, err
	}
	v, err := m.fn(pc.cc, pc.e.obj, args)
	if err != nil {
		return nil, err
	}
	if hasRefs(v) {
		// The connection was given references to the proxies inside v;
		// CPython clients cannot receive them (yet): give them back.
		s := pc.cc.s
		s.mu.Lock()
		var dead []*entry
		walkRefs(v, func(r *pb.ProxyRef) {
			if pc.cc.sc.refs[r.Id] > 0 {
				pc.cc.sc.refs[r.Id]--
				if pc.cc.sc.refs[r.Id] == 0 {
					delete(pc.cc.sc.refs, r.Id)
				}
				dead = s.decrefLocked(r.Id, 1, dead)
			}
		})
		s.mu.Unlock()
		s.freeEntries(dead)
		return nil, &typeError{"the value holds a proxy to a shared object, which a Python client cannot receive"}
	}
	return v, nil
}

// blockingCall runs a Go method that may wait, with timeout (a Python
// float or None) as a deadline. While it waits the connection is watched:
// a client that hangs up (or dies) cancels it.
func (pc *pyCallCtx) blockingCall(timeout any, name string, args ...*pb.Value) (*pb.Value, error) {
	ctx := pc.cc.ctx
	if d, ok, err := pyTimeout(timeout); err != nil {
		return nil, err
	} else if ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	// The watcher cancels the connection (sc.cancel), which ends every
	// context of its calls, this one included.
	done := make(chan struct{})
	defer close(done)
	sc := pc.cc.sc
	go func() {
		t := time.NewTicker(hangupCheck)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if sc.c.PeerClosed() {
					sc.cancel()
					return
				}
			}
		}
	}()
	cc := *pc.cc
	cc.ctx = ctx
	wait := *pc
	wait.cc = &cc
	return wait.goCall(name, args...)
}

// pyTimeout reads a timeout argument: None (or absent) is no timeout.
func pyTimeout(v any) (time.Duration, bool, error) {
	var f float64
	switch x := v.(type) {
	case nil, pyAbsent:
		return 0, false, nil
	case int64:
		f = float64(x)
	case float64:
		f = x
	case bool:
		return 0, false, &typeError{"timeout must be a number"}
	default:
		return 0, false, &typeError{"timeout must be a number"}
	}
	if f < 0 {
		f = 0
	}
	if f > 1e9 {
		return 0, false, nil
	}
	return time.Duration(f * float64(time.Second)), true, nil
}

// pyErrorReply turns an error into the reply CPython's client expects:
// '#ERROR' with the Python exception the operation raises in CPython,
// or '#TRACEBACK' (RemoteError with the Go message) for the rest.
func pyErrorReply(err error) (string, any) {
	var exc *pickle.Exception
	if errors.As(err, &exc) {
		return pyErrorKind, exc
	}
	builtin := func(name string) *pickle.Exception {
		return &pickle.Exception{Module: "builtins", Name: name, Args: pickle.Tuple{text.Valid(err.Error())}}
	}
	switch {
	case errors.Is(err, ErrKeyNotFound):
		return pyErrorKind, builtin("KeyError")
	case errors.Is(err, ErrIndexOutOfRange):
		return pyErrorKind, builtin("IndexError")
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrOverRelease):
		return pyErrorKind, builtin("ValueError")
	case errors.Is(err, ErrEmpty):
		return pyErrorKind, &pickle.Exception{Module: "_queue", Name: "Empty", Args: pickle.Tuple{}}
	case errors.Is(err, ErrFull):
		return pyErrorKind, &pickle.Exception{Module: "queue", Name: "Full", Args: pickle.Tuple{}}
	case errors.Is(err, ErrNotHeld), errors.Is(err, ErrBrokenBarrier):
		return pyErrorKind, builtin("RuntimeError")
	case errors.Is(err, ErrTypeError), errors.Is(err, ErrBadArgs):
		return pyErrorKind, builtin("TypeError")
	}
	return pyTraceback, tracebackText(err)
}

// pyExc is a Python exception to raise in the client.
func pyExc(name string, args ...any) error {
	return &pickle.Exception{Module: "builtins", Name: name, Args: pickle.Tuple(args)}
}
