// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"fmt"
	"reflect"

	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

var ctxType = reflect.TypeFor[context.Context]()

// RegisterType registers a user type by name, so that clients can create
// objects of it (Create) and call their exported methods (Object.Call). It
// is CPython's BaseManager.register, without the code from the wire:
// only the functions registered here ever run.
//
// ctor is a function that returns the new object, or the object and an
// error: func(args...) *T or func(args...) (*T, error). Its parameters
// (and the methods') may start with a context.Context; the others are
// decoded from the call's arguments (bool, numbers, string, []byte,
// slices, maps, structs, any; see the package doc's value model).
//
// The exposed methods are the exported methods of the constructor's
// result type whose results are (), (R), (error) or (R, error), and only
// those: anything else is an ErrUnknownMethod error that names it. A
// method result whose type is itself a registered type becomes a new
// shared object, and the caller receives a proxy to it.
//
// Methods run in the server, each call in its own goroutine (like
// net/rpc), so they may block (taking a context.Context lets a client's
// cancellation reach them) and may be called concurrently: guard the
// object's state with a mutex. A panic in a method is returned to the
// caller as a *RemoteError with the stack.
//
// Register at package level (var _ = manager.RegisterType(...)) so that
// a server started as a child process has the type too. RegisterType
// panics if name is taken or ctor has the wrong shape. It returns name.
func RegisterType(name string, ctor any) string {
	if name == "" || len(name) > MaxNameLen {
		panic("manager: RegisterType: bad name")
	}
	fv := reflect.ValueOf(ctor)
	ft := fv.Type()
	if ft.Kind() != reflect.Func || ft.IsVariadic() {
		panic(fmt.Sprintf("manager: RegisterType(%q): constructor must be a non-variadic func, not %s", name, ft))
	}
	switch {
	case ft.NumOut() == 1 && ft.Out(0) != errorType:
	case ft.NumOut() == 2 && ft.Out(1) == errorType:
	default:
		panic(fmt.Sprintf("manager: RegisterType(%q): constructor must return T or (T, error), not %s", name, ft))
	}
	rt := ft.Out(0)
	ti := &typeInfo{name: name, goType: rt, custom: true, methods: map[string]*method{}}
	for i := range rt.NumMethod() {
		m := rt.Method(i)
		if cm := customMethod(ti, m); cm != nil {
			ti.methods[m.Name] = cm
		}
	}
	ctorFn := makeCaller(fv, ft, false)
	ti.create = func(cc *callCtx, args []*pb.Value) (any, error) {
		out, err := ctorFn(cc, reflect.Value{}, args)
		if err != nil {
			return nil, err
		}
		if !out.IsValid() || ((out.Kind() == reflect.Pointer || out.Kind() == reflect.Interface) && out.IsNil()) {
			return nil, fmt.Errorf("manager: constructor of %s returned nil", name)
		}
		return out.Interface(), nil
	}
	register(ti)
	return name
}

func customMethod(ti *typeInfo, m reflect.Method) *method {
	mt := m.Type // receiver first
	if mt.IsVariadic() {
		return nil
	}
	switch {
	case mt.NumOut() == 0:
	case mt.NumOut() == 1:
	case mt.NumOut() == 2 && mt.Out(1) == errorType:
	default:
		return nil
	}
	for i := 1; i < mt.NumIn(); i++ {
		if i > 1 && mt.In(i) == ctxType {
			return nil
		}
	}
	nargs := mt.NumIn() - 1
	if nargs > 0 && mt.In(1) == ctxType {
		nargs--
	}
	call := makeCaller(m.Func, mt, true)
	return &method{name: m.Name, blocking: true, nargs: nargs, fn: func(cc *callCtx, obj any, args []*pb.Value) (*pb.Value, error) {
		out, err := call(cc, reflect.ValueOf(obj), args)
		if err != nil || !out.IsValid() {
			return nil, err
		}
		enc := &encoder{newObject: func(v reflect.Value, ti *typeInfo) (*pb.Value, error) {
			ref, err := cc.s.add(cc.sc, ti, v.Interface())
			if err != nil {
				return nil, err
			}
			return refValue(ref), nil
		}}
		return enc.reflect(out, 0)
	}}
}

// makeCaller returns a function that decodes args into ft's parameters
// (after the receiver when method is true, and after a leading
// context.Context), calls fn and splits its results into a value and an
// error.
func makeCaller(fn reflect.Value, ft reflect.Type, method bool) func(cc *callCtx, recv reflect.Value, args []*pb.Value) (reflect.Value, error) {
	first := 0
	if method {
		first = 1
	}
	withCtx := ft.NumIn() > first && ft.In(first) == ctxType
	argStart := first
	if withCtx {
		argStart++
	}
	nargs := ft.NumIn() - argStart
	hasErr := ft.NumOut() > 0 && ft.Out(ft.NumOut()-1) == errorType
	hasVal := ft.NumOut() == 2 || (ft.NumOut() == 1 && !hasErr)
	return func(cc *callCtx, recv reflect.Value, args []*pb.Value) (reflect.Value, error) {
		if len(args) != nargs {
			return reflect.Value{}, errorf(ErrBadArgs, "takes %d arguments, got %d", nargs, len(args))
		}
		in := make([]reflect.Value, 0, ft.NumIn())
		if method {
			in = append(in, recv)
		}
		if withCtx {
			in = append(in, reflect.ValueOf(cc.ctx))
		}
		d := &decoder{} // proxies are not accepted as arguments of custom methods
		for i, a := range args {
			p := reflect.New(ft.In(argStart + i)).Elem()
			if err := d.decodeInto(a, p, 0); err != nil {
				return reflect.Value{}, fmt.Errorf("%w: argument %d: %w", ErrBadArgs, i+1, err)
			}
			in = append(in, p)
		}
		out := fn.Call(in)
		if hasErr {
			if e := out[len(out)-1]; !e.IsNil() {
				return reflect.Value{}, e.Interface().(error)
			}
		}
		if hasVal {
			return out[0], nil
		}
		return reflect.Value{}, nil
	}
}
