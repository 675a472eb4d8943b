// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"crypto/tls"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/multiproc/multiproc/process"

	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// An Option configures a Server, a Client or Start.
type Option func(*options)

type options struct {
	log         *zap.Logger
	maxFrame    int64
	maxObjects  int
	maxNames    int
	authkey     []byte
	hasAuthkey  bool
	initializer string
	network     string
	address     string
	starter     process.Starter
	tls         *tls.Config // TLS
	serverTLS   string      // ServerTLS

	maxCallsConn, maxCalls         int   // MaxCalls
	maxCallBytesConn, maxCallBytes int64 // MaxCallBytes
}

func defaultOptions() options {
	return options{log: zap.NewNop(), maxFrame: DefaultMaxFrame, maxObjects: 1 << 20, maxNames: DefaultMaxNames,
		maxCallsConn: DefaultMaxCallsPerConn, maxCalls: DefaultMaxCalls,
		maxCallBytesConn: DefaultMaxCallBytesPerConn, maxCallBytes: DefaultMaxCallBytes}
}

// Logger sets the logger (zap.NewNop by default).
func Logger(l *zap.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// MaxFrameSize sets the largest request or response frame, in bytes
// (DefaultMaxFrame by default). A peer that announces more is refused
// before anything of that size is allocated.
func MaxFrameSize(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.maxFrame = n
		}
	}
}

// MaxObjects bounds the number of live objects a server holds
// (1<<20 by default); a create beyond it fails.
func MaxObjects(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxObjects = n
		}
	}
}

// MaxNames bounds the number of names a server publishes at once
// (DefaultMaxNames by default); a Publish beyond it fails with
// ErrBadRequest. For NewServer and Start.
func MaxNames(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxNames = n
		}
	}
}

// Authkey sets the key of the HMAC challenge handshake that every
// connection passes (CPython's authkey). Start generates a random key when
// none is given; Listen and Connect require one.
func Authkey(key []byte) Option {
	return func(o *options) {
		o.authkey = append([]byte(nil), key...)
		o.hasAuthkey = true
	}
}

// Starter makes Start start the server process with s (for example a
// forkserver's Starter, whose warm processes start in a round trip)
// instead of process.DefaultStarter() (Spawn, unless
// process.SetDefaultStarter chose another).
func Starter(s process.Starter) Option {
	return func(o *options) { o.starter = s }
}

// Address sets where Start's server listens: network "unix" (the
// default, a fresh socket path in a private temporary directory) or
// "tcp" (e.g. "127.0.0.1:0").
func Address(network, address string) Option {
	return func(o *options) { o.network, o.address = network, address }
}

// ---------------------------------------------------------------- types

// method is one exposed method of a shared type.
type method struct {
	name     string
	blocking bool // runs in its own goroutine with a cancellable context
	nargs    int  // -1: any number
	optional int  // trailing arguments that may be left out
	fn       func(cc *callCtx, obj any, args []*pb.Value) (*pb.Value, error)
}

// typeInfo describes a type the server can create.
type typeInfo struct {
	name    string
	methods map[string]*method
	create  func(cc *callCtx, args []*pb.Value) (any, error)
	goType  reflect.Type // custom types: the constructor's result type
	custom  bool
}

// getValuer is an object that can copy its contents into a Value.
type getValuer interface {
	getValue(cc *callCtx) (*pb.Value, error)
}

// freer is an object with something to do when freed; it returns the
// values it held, whose proxy references are then dropped.
type freer interface {
	free() []*pb.Value
}

func mk[O any](name string, nargs int, fn func(*callCtx, O, []*pb.Value) (*pb.Value, error)) *method {
	return &method{name: name, nargs: nargs, fn: func(cc *callCtx, o any, a []*pb.Value) (*pb.Value, error) {
		return fn(cc, o.(O), a)
	}}
}

func opt(m *method, n int) *method { m.optional = n; return m }

func blocking(m *method) *method { m.blocking = true; return m }

func methods(ms ...*method) map[string]*method {
	out := make(map[string]*method, len(ms))
	for _, m := range ms {
		out[m.name] = m
	}
	return out
}

var registry struct {
	sync.RWMutex
	byName map[string]*typeInfo
	byType map[reflect.Type]*typeInfo
}

func register(ti *typeInfo) {
	registry.Lock()
	defer registry.Unlock()
	if registry.byName == nil {
		registry.byName = map[string]*typeInfo{}
		registry.byType = map[reflect.Type]*typeInfo{}
	}
	if _, dup := registry.byName[ti.name]; dup {
		panic(fmt.Sprintf("manager: type %q registered twice", ti.name))
	}
	registry.byName[ti.name] = ti
	if ti.goType != nil {
		registry.byType[ti.goType] = ti
	}
}

func lookupType(name string) *typeInfo {
	registry.RLock()
	defer registry.RUnlock()
	return registry.byName[name]
}

func customByType(t reflect.Type) *typeInfo {
	registry.RLock()
	defer registry.RUnlock()
	return registry.byType[t]
}

func typeNames() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.byName))
	for n := range registry.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ---------------------------------------------------------------- arg helpers

func argInt(a *pb.Value, what string) (int64, error) {
	switch x := a.GetKind().(type) {
	case *pb.Value_Int:
		return x.Int, nil
	case *pb.Value_Bool:
		if x.Bool {
			return 1, nil
		}
		return 0, nil
	}
	return 0, errorf(ErrBadArgs, "%s must be an int, not %s", what, kindName(a))
}

func argBool(a *pb.Value, what string) (bool, error) {
	if x, ok := a.GetKind().(*pb.Value_Bool); ok {
		return x.Bool, nil
	}
	return false, errorf(ErrBadArgs, "%s must be a bool, not %s", what, kindName(a))
}

func argString(a *pb.Value, what string) (string, error) {
	if x, ok := a.GetKind().(*pb.Value_String_); ok {
		return x.String_, nil
	}
	return "", errorf(ErrBadArgs, "%s must be a string, not %s", what, kindName(a))
}

func argList(a *pb.Value, what string) ([]*pb.Value, error) {
	switch x := a.GetKind().(type) {
	case *pb.Value_List:
		return x.List.GetItems(), nil
	case *pb.Value_Null:
		return nil, nil
	}
	return nil, errorf(ErrBadArgs, "%s must be a list, not %s", what, kindName(a))
}

func isNull(a *pb.Value) bool {
	switch a.GetKind().(type) {
	case nil, *pb.Value_Null:
		return true
	}
	return false
}
