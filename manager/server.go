// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/internal/base/text"
	"github.com/multiproc/multiproc/ipc"
	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// A Listener hands the server authenticated connections. *ipc.Listener
// (ipc.Listen) is one; Accept must return when ctx ends or the listener is
// closed. Serve calls Accept from one goroutine, so Accept must not wait
// for one peer's handshake while others are ready: *ipc.Listener runs
// handshakes concurrently, bounded in time and number, and returns the
// connections that passed.
type Listener interface {
	Accept(ctx context.Context) (*ipc.Conn, error)
	Close() error
}

// Server owns shared objects and serves clients. The zero value is not
// usable; make one with NewServer. A Server may serve several listeners
// and single connections at once; all its methods are safe for concurrent
// use.
//
// Objects live while some connection or some shared container references
// them. Each connection's references are counted separately, so a client
// that disconnects or dies drops its references and objects no one else
// references are freed; locks it held are released (the next acquirer is
// told ErrOwnerDead).
type Server struct {
	opts options

	mu     sync.Mutex // guards everything below and every entry's refs
	objs   map[uint64]*entry
	nextID uint64
	conns  map[*sconn]struct{}
	lns    map[Listener]struct{}
	names  map[string]uint64 // published names (names.go)
	closed bool

	budget budget // calls running (budget.go)

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // connection goroutines

	py pyState // what CPython clients share (pyserver.go)

	// wantProcs, if set, is called when parallelism may pay: a connection
	// is accepted, or a connection's requests arrive in batches (calls
	// from concurrent goroutines). Set before serving.
	wantProcs func()
}

// entry is one shared object.
type entry struct {
	id     uint64
	secret []byte // capability secret (secretLen random bytes): see PROTOCOL.md
	ti     *typeInfo
	obj    any
	refs   int64
}

// secretLen is the length of an object's capability secret: 128 bits.
const secretLen = 16

// NewServer makes a server. Options: Logger, MaxFrameSize, MaxObjects,
// MaxNames, MaxCalls, MaxCallBytes.
func NewServer(opts ...Option) *Server {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	return &Server{
		opts:  o,
		objs:  map[uint64]*entry{},
		names: map[string]uint64{},
		conns: map[*sconn]struct{}{},
		lns:   map[Listener]struct{}{},
		done:  make(chan struct{}),
	}
}

// Done is closed when the server has shut down (Close, or a client's
// Shutdown request).
func (s *Server) Done() <-chan struct{} { return s.done }

// Serve accepts connections from l and serves each until it closes. It
// takes ownership of l and returns ErrClosed once the server is closed,
// ctx.Err() when ctx ends (the server's connections keep running until
// Close), or the listener's error.
func (s *Server) Serve(ctx context.Context, l Listener) error {
	return s.serveListener(ctx, l, s.startConn)
}

// serveListener is Serve with start run for each accepted connection
// (ServePython passes its own).
func (s *Server) serveListener(ctx context.Context, l Listener, start func(*ipc.Conn) bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	s.lns[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, l)
		s.mu.Unlock()
		l.Close()
	}()
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-actx.Done():
		}
	}()
	// One goroutine accepts: *ipc.Listener runs the handshakes
	// concurrently, so a client that connects and stays silent holds up
	// no one (see Listener).
	return s.acceptLoop(ctx, actx, l, start)
}

func (s *Server) acceptLoop(ctx, actx context.Context, l Listener, start func(*ipc.Conn) bool) error {
	var backoff time.Duration
	for {
		c, err := l.Accept(actx)
		if err != nil {
			select {
			case <-s.done:
				return ErrClosed
			default:
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, ipc.ErrClosed) {
				return err
			}
			// A client with a wrong key, or one that hung up or stalled
			// during the handshake, gets nothing; the server keeps
			// serving. Other failures (out of file descriptors) are
			// retried after a growing pause, as net/http does.
			s.opts.log.Info("manager: connection refused", zap.Error(err))
			var he *ipc.HandshakeError
			if !errors.Is(err, ipc.ErrAuthentication) && !errors.As(err, &he) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-actx.Done():
					t.Stop()
				}
			}
			continue
		}
		backoff = 0
		if s.wantProcs != nil {
			s.wantProcs()
		}
		if !start(c) {
			return ErrClosed
		}
	}
}

// ServeConn serves one connection (already authenticated, e.g. one end of
// an ipc.Pipe) until it closes or the server shuts down. It takes
// ownership of c.
func (s *Server) ServeConn(ctx context.Context, c *ipc.Conn) error {
	sc := s.newConn(c)
	if sc == nil {
		c.Close()
		return ErrClosed
	}
	stop := context.AfterFunc(ctx, func() { sc.c.Close() })
	defer stop()
	sc.serve()
	return nil
}

func (s *Server) startConn(c *ipc.Conn) bool {
	sc := s.newConn(c)
	if sc == nil {
		c.Close()
		return false
	}
	go sc.serve()
	return true
}

func (s *Server) newConn(c *ipc.Conn) *sconn {
	ctx, cancel := context.WithCancel(context.Background())
	sc := &sconn{s: s, c: c, ctx: ctx, cancel: cancel, refs: map[uint64]int64{},
		inflight: map[uint64]context.CancelFunc{}, held: map[*lockCore]struct{}{}}
	sc.w = ipc.NewBatcher(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		cancel()
		return nil
	}
	s.conns[sc] = struct{}{}
	s.wg.Add(1)
	return sc
}

// Close shuts the server down: listeners and connections are closed,
// blocked calls return ErrClosed, and every object is freed. It waits for
// the server's goroutines to end. Close is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		lns := make([]Listener, 0, len(s.lns))
		for l := range s.lns {
			lns = append(lns, l)
		}
		conns := make([]*sconn, 0, len(s.conns))
		for sc := range s.conns {
			conns = append(conns, sc)
		}
		s.mu.Unlock()
		close(s.done)
		for _, l := range lns {
			l.Close()
		}
		for _, sc := range conns {
			sc.cancel()
			sc.c.Close()
		}
		s.wg.Wait()
		s.mu.Lock()
		objs := s.objs
		s.objs = map[uint64]*entry{}
		s.names = map[string]uint64{}
		s.mu.Unlock()
		for _, e := range objs {
			if f, ok := e.obj.(freer); ok {
				f.free()
			}
		}
	})
	return nil
}

// Shutdown is Close bounded by ctx: it returns ctx.Err() if the server's
// goroutines have not ended when ctx does (they still end later).
func (s *Server) Shutdown(ctx context.Context) error {
	ch := make(chan struct{})
	go func() { s.Close(); close(ch) }()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NumObjects returns the number of live shared objects.
func (s *Server) NumObjects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.objs)
}

// ---------------------------------------------------------------- registry

// add registers a new object and returns the reference to send to sc,
// which (if not nil) holds the object's first reference: creating an
// object grants the creator its capability.
func (s *Server) add(sc *sconn, ti *typeInfo, obj any) (*pb.ProxyRef, error) {
	secret := newSecret()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.addLocked(ti, obj, secret)
	if err != nil {
		return nil, err
	}
	if sc != nil {
		s.grantLocked(sc, e, 1)
	}
	return &pb.ProxyRef{Id: e.id, Typeid: ti.name, Secret: e.secret}, nil
}

// newSecret makes an object's capability secret (before taking s.mu:
// it may be a system call).
func newSecret() []byte {
	secret := make([]byte, secretLen)
	rand.Read(secret)
	return secret
}

// addLocked registers a new object with no reference yet: the caller
// gives it its first one at once, under the same lock.
func (s *Server) addLocked(ti *typeInfo, obj any, secret []byte) (*entry, error) {
	if s.closed {
		return nil, ErrClosed
	}
	if len(s.objs) >= s.opts.maxObjects {
		return nil, fmt.Errorf("%w: the server holds its maximum of %d objects", ErrBadRequest, s.opts.maxObjects)
	}
	s.nextID++
	e := &entry{id: s.nextID, secret: secret, ti: ti, obj: obj}
	s.objs[e.id] = e
	return e, nil
}

// lookup returns the object id, whoever holds it.
func (s *Server) lookup(id uint64) (*entry, error) {
	s.mu.Lock()
	e := s.objs[id]
	s.mu.Unlock()
	if e == nil {
		return nil, errorf(ErrUnknownObject, "no object %d", id)
	}
	return e, nil
}

// holdValue takes a container's references to the proxies inside v (which
// is about to be stored in a shared object). It fails, taking nothing, if
// one of them is not a live object of this server.
func (s *Server) holdValue(v *pb.Value) error {
	if !hasRefs(v) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var bad *pb.ProxyRef
	walkRefs(v, func(r *pb.ProxyRef) {
		if bad == nil && s.objs[r.Id] == nil {
			bad = r
		}
	})
	if bad != nil {
		return errorf(ErrUnknownObject, "no object %d", bad.Id)
	}
	walkRefs(v, func(r *pb.ProxyRef) {
		e := s.objs[r.Id]
		e.refs++
		// Whoever gets this value back gets a reference (give), and so
		// the object's secret.
		r.Typeid, r.Secret = e.ti.name, e.secret
	})
	return nil
}

// dropValue drops a container's references to the proxies inside v.
func (s *Server) dropValue(vs ...*pb.Value) {
	var ids []uint64
	for _, v := range vs {
		if hasRefs(v) {
			walkRefs(v, func(r *pb.ProxyRef) { ids = append(ids, r.Id) })
		}
	}
	if len(ids) == 0 {
		return
	}
	s.mu.Lock()
	var dead []*entry
	for _, id := range ids {
		dead = s.decrefLocked(id, 1, dead)
	}
	s.mu.Unlock()
	s.freeEntries(dead)
}

func (s *Server) decrefLocked(id uint64, n int64, dead []*entry) []*entry {
	e := s.objs[id]
	if e == nil {
		return dead
	}
	e.refs -= n
	if e.refs <= 0 {
		delete(s.objs, id)
		dead = append(dead, e)
	}
	return dead
}

// freeEntries frees objects whose count reached zero, and the objects
// only they referenced.
func (s *Server) freeEntries(dead []*entry) {
	for len(dead) > 0 {
		e := dead[len(dead)-1]
		dead = dead[:len(dead)-1]
		s.opts.log.Debug("manager: object freed", zap.Uint64("id", e.id), zap.String("type", e.ti.name))
		f, ok := e.obj.(freer)
		if !ok {
			continue
		}
		held := f.free()
		if len(held) == 0 {
			continue
		}
		s.mu.Lock()
		for _, v := range held {
			walkRefs(v, func(r *pb.ProxyRef) { dead = s.decrefLocked(r.Id, 1, dead) })
		}
		s.mu.Unlock()
	}
}

// give hands the connection one reference to each proxy inside v, which
// is about to be sent to it. Called with the object holding v locked (so
// the referenced objects cannot be freed in between).
func (s *Server) give(sc *sconn, v *pb.Value) error {
	if sc == nil || !hasRefs(v) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var bad *pb.ProxyRef
	walkRefs(v, func(r *pb.ProxyRef) {
		if bad == nil && s.objs[r.Id] == nil {
			bad = r
		}
	})
	if bad != nil {
		return errorf(ErrUnknownObject, "no object %d", bad.Id)
	}
	walkRefs(v, func(r *pb.ProxyRef) { s.grantLocked(sc, s.objs[r.Id], 1) })
	return nil
}

// ---------------------------------------------------------------- connection

// sconn is the server side of one client connection.
type sconn struct {
	s      *Server
	c      *ipc.Conn
	w      *ipc.Batcher
	ctx    context.Context // ends when the connection does
	cancel context.CancelFunc

	refs map[uint64]int64 // guarded by s.mu

	ncalls int   // calls running in their goroutines; guarded by s.budget.mu
	nbytes int64 // the bytes of their requests

	mu       sync.Mutex // guards inflight and held
	inflight map[uint64]context.CancelFunc
	held     map[*lockCore]struct{}
	calls    sync.WaitGroup // blocking calls in their own goroutines
}

// Bounds on the answers the serve loop holds back to write in one go.
const (
	maxBatchAnswers = 256
	maxBatchBytes   = 1 << 20
)

func (sc *sconn) serve() {
	s := sc.s
	defer s.wg.Done()
	batch := 0       // requests handled since the last flush
	answers := 0     // responses among them
	var queued int64 // their bytes
	for {
		// No context: whatever ends the connection (Server.Close,
		// ServeConn's ctx, a failed reply) closes sc.c, which wakes the
		// receive; a cancellable one would cost every receive an AfterFunc.
		b, err := sc.c.RecvBytes(context.Background())
		if err != nil {
			break
		}
		if resp := s.handle(sc, b); resp != nil {
			frame := marshalResponse(resp)
			if err := sc.w.Enqueue(frame); err != nil {
				break
			}
			answers++
			queued += int64(len(frame))
		}
		batch++
		// Requests already read are answered first, all in one write. A
		// lone request is answered at once; after a batch, a poll tells
		// whether the client sent more meanwhile, to share the write too.
		// The answers held for one write are bounded (a client that sends
		// and never reads is then stopped by the write, not let to fill
		// the server's memory).
		if queued < maxBatchBytes && answers < maxBatchAnswers && (sc.c.Buffered() || (batch > 1 && sc.c.Ready())) {
			continue
		}
		if answers > 1 && s.wantProcs != nil {
			s.wantProcs()
		}
		batch, answers, queued = 0, 0, 0
		if err := sc.w.Flush(); err != nil {
			break
		}
	}
	sc.close()
}

// close ends the connection: blocking calls are cancelled, its references
// dropped and the locks it held released.
func (sc *sconn) close() {
	s := sc.s
	sc.cancel()
	sc.c.Close()
	sc.release()
	s.mu.Lock()
	delete(s.conns, sc)
	s.mu.Unlock()
}

// release waits for the connection's blocking calls (already cancelled),
// drops its references and then releases the locks it held, in that
// order: a client that acquires such a lock afterwards sees the dead
// client's references gone.
func (sc *sconn) release() {
	s := sc.s
	sc.calls.Wait()
	s.mu.Lock()
	var dead []*entry
	for id, n := range sc.refs {
		dead = s.decrefLocked(id, n, dead)
	}
	sc.refs = map[uint64]int64{}
	s.mu.Unlock()
	s.freeEntries(dead)
	sc.mu.Lock()
	held := make([]*lockCore, 0, len(sc.held))
	for l := range sc.held {
		held = append(held, l)
	}
	sc.mu.Unlock()
	for _, l := range held {
		l.connDied(sc)
	}
}

func (sc *sconn) reply(resp *pb.Response) {
	if err := sc.w.Send(marshalResponse(resp)); err != nil {
		sc.c.Close()
	}
}

func marshalResponse(r *pb.Response) []byte {
	b, err := proto.Marshal(r)
	if err != nil {
		// A Value built by the server is always encodable; report rather
		// than panic if that ever changes.
		b, _ = proto.Marshal(&pb.Response{Id: r.Id, Error: toRemote(fmt.Errorf("manager: encode response: %w", err), "", false)})
	}
	return b
}

var unmarshalOpts = proto.UnmarshalOptions{RecursionLimit: 2*MaxDepth + 16}

// callCtx is what a method sees of its caller.
type callCtx struct {
	ctx   context.Context
	sc    *sconn
	owner uint64
	s     *Server
}

// ret hands the caller references to the proxies inside v (see give).
func (cc *callCtx) ret(v *pb.Value) (*pb.Value, error) {
	if err := cc.s.give(cc.sc, v); err != nil {
		return nil, err
	}
	return v, nil
}

func errResponse(id uint64, err error) *pb.Response {
	return &pb.Response{Id: id, Error: toRemote(err, "", false)}
}

// handle decodes and runs one request. It returns the response to send,
// or nil when the response comes later (a blocking call) or there is none
// (a one-way request). It never panics, whatever b holds.
func (s *Server) handle(sc *sconn, b []byte) *pb.Response {
	req := new(pb.Request)
	if err := unmarshalOpts.Unmarshal(b, req); err != nil {
		return errResponse(0, errorf(ErrBadRequest, "undecodable request: %v", err))
	}
	id := req.Id
	oneWay := func() bool {
		switch req.Op.(type) {
		case *pb.Request_Refs, *pb.Request_Cancel:
			return true
		}
		return false
	}
	if id == 0 && !oneWay() {
		return errResponse(0, errorf(ErrBadRequest, "request id 0 is only for refs and cancel"))
	}
	cc := &callCtx{ctx: sc.ctx, sc: sc, s: s}
	var v *pb.Value
	var err error
	switch op := req.Op.(type) {
	case *pb.Request_Create:
		v, err = s.create(cc, op.Create)
	case *pb.Request_Call:
		return s.call(cc, id, op.Call, int64(len(b)))
	case *pb.Request_Refs:
		err = s.refOps(sc, op.Refs)
	case *pb.Request_GetValue:
		v, err = s.getValue(cc, op.GetValue)
	case *pb.Request_Shutdown:
		sc.reply(&pb.Response{Id: id, Value: nullValue})
		go s.Close()
		return nil
	case *pb.Request_ListTypes:
		names := typeNames()
		items := make([]*pb.Value, len(names))
		for i, n := range names {
			items[i] = strValue(n)
		}
		v = listValue(items)
	case *pb.Request_ListObjects:
		v = s.listObjects()
	case *pb.Request_Cancel:
		sc.mu.Lock()
		if cancel := sc.inflight[op.Cancel.GetTarget()]; cancel != nil {
			cancel()
		}
		sc.mu.Unlock()
	case *pb.Request_Ping:
		v = nullValue
	case *pb.Request_Stats:
		v = statsValue(s.Stats())
	case *pb.Request_Publish:
		v, err = s.publishReq(sc, op.Publish)
	case *pb.Request_Lookup:
		v, err = s.lookupReq(sc, op.Lookup)
	case *pb.Request_Unpublish:
		err = s.Unpublish(op.Unpublish.GetName())
	default:
		err = errorf(ErrBadRequest, "request has no known operation")
	}
	if id == 0 {
		if err != nil {
			s.opts.log.Debug("manager: one-way request failed", zap.Error(err))
		}
		return nil
	}
	if err != nil {
		return errResponse(id, err)
	}
	if v == nil {
		v = nullValue
	}
	return &pb.Response{Id: id, Value: v}
}

func checkArgs(s *Server, sc *sconn, args []*pb.Value) error {
	if len(args) > MaxArgs {
		return errorf(ErrBadRequest, "%d arguments (max %d)", len(args), MaxArgs)
	}
	for _, a := range args {
		if a == nil {
			return errorf(ErrBadRequest, "missing argument value")
		}
		if err := checkValue(a, 0); err != nil {
			return fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
	}
	return s.checkHeld(sc, args)
}

func (s *Server) create(cc *callCtx, c *pb.Create) (v *pb.Value, err error) {
	if len(c.Typeid) > MaxNameLen {
		return nil, errorf(ErrBadRequest, "type name too long")
	}
	ti := lookupType(c.Typeid)
	if ti == nil {
		return nil, errorf(ErrUnknownType, "%q", c.Typeid)
	}
	if err := checkArgs(s, cc.sc, c.Args); err != nil {
		return nil, err
	}
	defer recoverTo(&err, nil)
	obj, err := ti.create(cc, c.Args)
	if err != nil {
		return nil, err
	}
	ref, err := s.add(cc.sc, ti, obj)
	if err != nil {
		if f, ok := obj.(freer); ok {
			s.dropValue(f.free()...)
		}
		return nil, err
	}
	return refValue(ref), nil
}

// recoverTo turns a panic in a method into a RemoteError with its stack.
func recoverTo(err *error, v **pb.Value) {
	if r := recover(); r != nil {
		*err = &panicError{msg: fmt.Sprint(r), stack: string(debug.Stack())}
		if v != nil {
			*v = nil
		}
	}
}

type panicError struct{ msg, stack string }

func (e *panicError) Error() string { return "panic: " + e.msg }

func (s *Server) call(cc *callCtx, id uint64, c *pb.Call, size int64) *pb.Response {
	e, err := s.lookupHeld(cc.sc, c.Object)
	if err != nil {
		return errResponse(id, err)
	}
	m := e.ti.methods[c.Method]
	if m == nil {
		return errResponse(id, errorf(ErrUnknownMethod, "%s has no exposed method %q", e.ti.name, truncate(c.Method)))
	}
	if err := checkArgs(s, cc.sc, c.Args); err != nil {
		return errResponse(id, err)
	}
	cc.owner = c.Owner
	if !m.blocking {
		return invoke(cc, id, e, m, c.Args)
	}
	sc := cc.sc
	// At its bound the connection is not read from until a call ends
	// (budget.go).
	if !sc.reserve(size) {
		sc.c.Close() // the client left, or the server is closing
		return nil
	}
	ctx, cancel := context.WithCancel(sc.ctx)
	cc.ctx = ctx
	sc.mu.Lock()
	if _, dup := sc.inflight[id]; dup {
		sc.mu.Unlock()
		cancel()
		sc.unreserve(size)
		return errResponse(id, errorf(ErrBadRequest, "request id %d already in flight", id))
	}
	sc.inflight[id] = cancel
	sc.calls.Add(1)
	sc.mu.Unlock()
	go func() {
		defer sc.calls.Done()
		resp := invoke(cc, id, e, m, c.Args)
		sc.mu.Lock()
		delete(sc.inflight, id)
		sc.mu.Unlock()
		cancel()
		// The call keeps its place until its answer is written.
		if err := sc.w.SendWait(marshalResponse(resp)); err != nil {
			sc.c.Close()
		}
		sc.unreserve(size)
	}()
	return nil
}

func truncate(s string) string {
	return text.Clip(s, 64, "...")
}

func invoke(cc *callCtx, id uint64, e *entry, m *method, args []*pb.Value) (resp *pb.Response) {
	defer func() {
		if r := recover(); r != nil {
			resp = &pb.Response{Id: id, Error: toRemote(fmt.Errorf("manager: %s.%s panicked: %v", e.ti.name, m.name, r), string(debug.Stack()), true)}
		}
	}()
	if m.nargs >= 0 && len(args) != m.nargs && !(m.optional > 0 && len(args) >= m.nargs-m.optional && len(args) <= m.nargs) {
		return errResponse(id, errorf(ErrBadArgs, "%s.%s takes %d arguments, got %d", e.ti.name, m.name, m.nargs, len(args)))
	}
	v, err := m.fn(cc, e.obj, args)
	if err != nil {
		if cc.ctx.Err() != nil && errors.Is(err, cc.ctx.Err()) {
			err = context.Canceled
		}
		return errResponse(id, err)
	}
	if v == nil {
		v = nullValue
	}
	return &pb.Response{Id: id, Value: v}
}

func (s *Server) refOps(sc *sconn, r *pb.RefOps) error {
	if len(r.Ops) > MaxRefOps {
		return errorf(ErrBadRequest, "%d reference operations (max %d)", len(r.Ops), MaxRefOps)
	}
	s.mu.Lock()
	var dead []*entry
	var err error
	for _, op := range r.Ops {
		switch {
		case op.Delta > 0:
			// More references to an object the connection holds, or a
			// claim of a handed-over proxy with the object's secret.
			e := s.objs[op.Object]
			if e == nil || (sc.refs[op.Object] <= 0 && !hmac.Equal(op.Secret, e.secret)) {
				err = errorf(ErrUnknownObject, "no object %d", op.Object)
				continue
			}
			s.grantLocked(sc, e, int64(op.Delta))
		case op.Delta < 0:
			// A connection can only drop references it holds.
			n := min(-int64(op.Delta), sc.refs[op.Object])
			if n <= 0 {
				continue
			}
			sc.refs[op.Object] -= n
			if sc.refs[op.Object] == 0 {
				delete(sc.refs, op.Object)
			}
			dead = s.decrefLocked(op.Object, n, dead)
		}
	}
	s.mu.Unlock()
	s.freeEntries(dead)
	return err
}

func (s *Server) getValue(cc *callCtx, g *pb.GetValue) (v *pb.Value, err error) {
	e, err := s.lookupHeld(cc.sc, g.Object)
	if err != nil {
		return nil, err
	}
	gv, ok := e.obj.(getValuer)
	if !ok {
		return nil, errorf(ErrUnknownMethod, "%s has no value to copy", e.ti.name)
	}
	defer recoverTo(&err, &v)
	return gv.getValue(cc)
}

func (s *Server) listObjects() *pb.Value {
	s.mu.Lock()
	ids := make([]uint64, 0, len(s.objs))
	for id := range s.objs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	items := make([]*pb.Value, 0, len(ids))
	for _, id := range ids {
		e := s.objs[id]
		items = append(items, &pb.Value{Kind: &pb.Value_Map{Map: &pb.Map{Entries: []*pb.Entry{
			{Key: strValue("id"), Value: intValue(int64(e.id))},
			{Key: strValue("type"), Value: strValue(e.ti.name)},
			{Key: strValue("refs"), Value: intValue(e.refs)},
		}}}})
	}
	s.mu.Unlock()
	return listValue(items)
}
