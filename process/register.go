// SPDX-License-Identifier: Apache-2.0

package process

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"sync"

	"github.com/multiproc/multiproc/process/internal/plumbing"
)

// A Func is a function registered to run in child processes. Make one
// with Register at package level, so that the parent and every child (the
// same binary, re-executed) register the same functions under the same
// names.
type Func struct {
	name    string
	fn      reflect.Value
	params  []param // after the context
	retErr  bool
	typeStr string
	// invoke calls fn without reflect.Value.Call, whose first call of a
	// function type builds its frame layout (tens of microseconds of a
	// child's start); nil for the shapes only reflection can call.
	invoke func(ctx context.Context, args []reflect.Value) error
}

type param struct {
	t      reflect.Type
	handle bool // t is *T and *T implements attacher
}

// handler is a value that can travel to a child with its open files.
type handler interface {
	MultiprocHandle() (files []*os.File, desc []byte, err error)
}

// attacher is implemented by *T for a handle type T: it is called on a
// zero value in the child and takes ownership of the files.
type attacher interface {
	MultiprocAttach(files []*os.File, desc []byte) error
}

var (
	ctxType      = reflect.TypeFor[context.Context]()
	errType      = reflect.TypeFor[error]()
	attacherType = reflect.TypeFor[attacher]()

	regMu    sync.RWMutex
	registry = map[string]*Func{}
)

// Register registers fn under name so that a child process can run it,
// and returns the *Func to put in Process.Func. Call it at package level
// (var f = process.Register(...)), never conditionally: parent and
// children must register the same functions.
//
// fn must be a func whose first parameter is a context.Context and which
// returns an error or nothing:
//
//	func(ctx context.Context, a A, b *B, ...) error
//	func(ctx context.Context, a A, ...)
//
// Each other parameter is either a handle, a pointer *T where *T has a
// MultiprocAttach method (an *ipc.Conn, a queue, a lock, a shared memory
// segment), or a plain value encoded by ipc.DefaultCodec: []byte as is, a
// proto.Message in protobuf wire format, anything else with gob. Interface
// parameters, channels, functions and variadic functions are not allowed.
//
// Register panics, with a message that says what is wrong, when name is
// empty or already registered, when fn has another shape, or when it is
// called after process.Init() (from main instead of at package level: the
// children, which run Init before main's code, would not know fn).
func Register(name string, fn any) *Func { return register(name, fn, nil) }

// register is Register, with the typed call of fn when its caller has
// one (Register1).
func register(name string, fn any, invoke func(context.Context, []reflect.Value) error) *Func {
	if name == "" {
		panic("process: Register with an empty name")
	}
	v := reflect.ValueOf(fn)
	t := v.Type()
	sig := func(msg string, a ...any) {
		panic(fmt.Sprintf("process: Register(%q, %v): %s; want func(context.Context, args...) error or func(context.Context, args...)",
			name, t, fmt.Sprintf(msg, a...)))
	}
	if fn == nil || t.Kind() != reflect.Func {
		panic(fmt.Sprintf("process: Register(%q, %T): not a function", name, fn))
	}
	if v.IsNil() {
		panic(fmt.Sprintf("process: Register(%q, %v): nil function", name, t))
	}
	if t.IsVariadic() {
		sig("variadic functions are not supported")
	}
	if t.NumIn() == 0 || t.In(0) != ctxType {
		sig("the first parameter must be a context.Context")
	}
	switch {
	case t.NumOut() == 0:
	case t.NumOut() == 1 && t.Out(0) == errType:
	default:
		sig("it must return error or nothing")
	}
	f := &Func{name: name, fn: v, retErr: t.NumOut() == 1, typeStr: t.String(), invoke: invoke}
	switch fn := fn.(type) {
	case func(context.Context) error:
		f.invoke = func(ctx context.Context, _ []reflect.Value) error { return fn(ctx) }
	case func(context.Context):
		f.invoke = func(ctx context.Context, _ []reflect.Value) error { fn(ctx); return nil }
	}
	for i := 1; i < t.NumIn(); i++ {
		pt := t.In(i)
		switch pt.Kind() {
		case reflect.Interface:
			sig("parameter %d has interface type %v; use a concrete type (a child must know what to decode)", i, pt)
		case reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Uintptr:
			sig("parameter %d has type %v, which cannot travel to another process", i, pt)
		}
		f.params = append(f.params, param{t: pt, handle: pt.Kind() == reflect.Pointer && pt.Implements(attacherType)})
	}
	regMu.Lock()
	defer regMu.Unlock()
	if old, dup := registry[name]; dup {
		panic(fmt.Sprintf("process: Register(%q): name already registered (for a %s)", name, old.typeStr))
	}
	if plumbing.Initialized.Load() {
		panic(fmt.Sprintf("process: Register(%q) called after process.Init(): register functions at package level "+
			"(var f = process.Register(...)), so that child processes, which run process.Init() before main's code, know them too", name))
	}
	registry[name] = f
	return f
}

// Func1 is a function of one argument registered with Register1; its
// Process method is checked by the compiler.
type Func1[A any] struct{ *Func }

// Register1 is Register for a function of one argument, with the argument
// type checked at compile time:
//
//	var square = process.Register1("square", func(ctx context.Context, n int) error { ... })
//	p := square.Process(7)
func Register1[A any](name string, fn func(context.Context, A) error) Func1[A] {
	return Func1[A]{register(name, fn, func(ctx context.Context, args []reflect.Value) error {
		return fn(ctx, args[0].Interface().(A))
	})}
}

// Process returns a Process that runs f with argument a.
func (f Func1[A]) Process(a A) *Process { return &Process{Func: f.Func, Args: []any{a}} }

// Name returns the name f was registered under.
func (f *Func) Name() string { return f.name }

// String returns the name and the signature.
func (f *Func) String() string { return f.name + " " + f.typeStr }

// Process returns a Process that runs f with args; set its other fields
// before Start.
func (f *Func) Process(args ...any) *Process { return &Process{Func: f, Args: args} }

func lookup(name string) (*Func, bool) {
	regMu.RLock()
	f, ok := registry[name]
	regMu.RUnlock()
	return f, ok
}

// checkArgs reports whether args fit f's parameters.
func (f *Func) checkArgs(args []any) error {
	if len(args) != len(f.params) {
		return fmt.Errorf("%w: %s takes %d arguments after the context, got %d", ErrBadArgs, f, len(f.params), len(args))
	}
	for i, a := range args {
		p := f.params[i]
		if a == nil {
			return fmt.Errorf("%w: %s: argument %d is nil (want %v)", ErrBadArgs, f.name, i, p.t)
		}
		at := reflect.TypeOf(a)
		if !at.AssignableTo(p.t) {
			return fmt.Errorf("%w: %s: argument %d is a %v, want %v", ErrBadArgs, f.name, i, at, p.t)
		}
		if p.handle {
			if _, ok := a.(handler); !ok {
				return fmt.Errorf("%w: %s: argument %d (%v) has MultiprocAttach but no MultiprocHandle method", ErrBadArgs, f.name, i, at)
			}
			if reflect.ValueOf(a).IsNil() {
				return fmt.Errorf("%w: %s: argument %d is a nil %v", ErrBadArgs, f.name, i, at)
			}
		}
	}
	return nil
}
