// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// Structs ride the Value model: no kind of their own, no other encoder.
// A struct is a map whose keys are the names of its exported fields, in
// declaration order; a struct whose type implements encoding.TextMarshaler
// (on T or *T) and encoding.TextUnmarshaler (on *T), such as time.Time, is
// its text as a string. So a struct in a shared container is data the
// server stores and compares (List.Remove, List.Index) like any map, and a
// proxy in a struct field is a nested proxy like any other.

var (
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// structType is what the codec knows of a struct type.
type structType struct {
	fields []structField // exported fields, in declaration order
	byName map[string]int
	// text: the type is encoded by MarshalText / UnmarshalText.
	text bool
	// opaque: the type has fields, none of them exported (and no text
	// form), so encoding it would lose everything it holds.
	opaque bool
}

type structField struct {
	name  string
	index int
}

var structTypes sync.Map // reflect.Type -> *structType

func structInfo(t reflect.Type) *structType {
	if st, ok := structTypes.Load(t); ok {
		return st.(*structType)
	}
	st := &structType{byName: map[string]int{}}
	pt := reflect.PointerTo(t)
	if (t.Implements(textMarshalerType) || pt.Implements(textMarshalerType)) && pt.Implements(textUnmarshalerType) {
		st.text = true
	} else {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			st.byName[f.Name] = len(st.fields)
			st.fields = append(st.fields, structField{name: f.Name, index: i})
		}
		st.opaque = t.NumField() > 0 && len(st.fields) == 0
	}
	actual, _ := structTypes.LoadOrStore(t, st)
	return actual.(*structType)
}

// typeName is t's name as a user wrote it, without the package path.
func typeName(t reflect.Type) string {
	if t.Name() != "" {
		return t.Name()
	}
	return t.String()
}

// encodeStruct encodes a struct as the map of its exported fields.
func (e *encoder) encodeStruct(rv reflect.Value, depth int) (*pb.Value, error) {
	t := rv.Type()
	st := structInfo(t)
	switch {
	case st.text:
		m := rv
		if !t.Implements(textMarshalerType) {
			p := reflect.New(t)
			p.Elem().Set(rv)
			m = p
		}
		b, err := m.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return nil, &pathError{op: "encode", cause: fmt.Errorf("manager: %s.MarshalText: %w", t, err)}
		}
		return strValue(string(b)), nil
	case st.opaque:
		return nil, &pathError{op: "encode", cause: &unencodableError{t: t, opaque: true}}
	}
	entries := make([]*pb.Entry, len(st.fields))
	for i, f := range st.fields {
		v, err := e.reflect(rv.Field(f.index), depth+1)
		if err != nil {
			return nil, inField(err, "encode", t, f.name)
		}
		entries[i] = &pb.Entry{Key: strValue(f.name), Value: v}
	}
	return &pb.Value{Kind: &pb.Value_Map{Map: &pb.Map{Entries: entries}}}, nil
}

// decodeStruct decodes a map into the struct dst: each string key names
// an exported field. Keys naming no field are ignored (the struct may be
// an older or newer version of the writer's), and fields without a key
// are left zero.
func (d *decoder) decodeStruct(m *pb.Map, dst reflect.Value, depth int) error {
	t := dst.Type()
	st := structInfo(t)
	if st.text || st.opaque {
		return mismatch(&pb.Value{Kind: &pb.Value_Map{Map: m}}, t)
	}
	dst.SetZero()
	for _, e := range m.GetEntries() {
		k, ok := e.GetKey().GetKind().(*pb.Value_String_)
		if !ok {
			return fmt.Errorf("manager: a map key of kind %s cannot name a field of %s", kindName(e.GetKey()), t)
		}
		i, ok := st.byName[k.String_]
		if !ok {
			continue
		}
		f := st.fields[i]
		if err := d.decodeInto(e.GetValue(), dst.Field(f.index), depth+1); err != nil {
			return inField(err, "decode", t, f.name)
		}
	}
	return nil
}

// decodeText decodes a string into a struct with a text form.
func decodeText(s string, dst reflect.Value) error {
	p := reflect.New(dst.Type())
	if err := p.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("manager: %s.UnmarshalText: %w", dst.Type(), err)
	}
	dst.Set(p.Elem())
	return nil
}

// ---------------------------------------------------------------- errors

// unencodableError is a value of a type the Value model cannot hold.
type unencodableError struct {
	t      reflect.Type
	opaque bool // a struct without exported fields
}

func (e *unencodableError) Error() string {
	if e.opaque {
		return fmt.Sprintf("manager: cannot send a value of type %s: it has no exported fields", e.t)
	}
	return fmt.Sprintf("manager: cannot send a value of type %s (only nil, bool, numbers, strings, bytes, slices, maps, structs with exported fields and proxies)", e.t)
}

// short is the reason as it reads after a field path.
func (e *unencodableError) short() string {
	if e.opaque {
		return fmt.Sprintf("struct %s has no exported fields", e.t)
	}
	switch e.t.Kind() {
	case reflect.Func, reflect.Chan, reflect.Complex64, reflect.Complex128:
		return e.t.Kind().String() + " type"
	case reflect.UnsafePointer:
		return "unsafe.Pointer type"
	}
	return e.t.String() + " type"
}

// pathError is an encoding or decoding error inside a struct, with the
// path from the outermost struct to the value that failed:
// "manager: cannot encode field Order.Items[].Callback: func type".
type pathError struct {
	op    string // "encode" or "decode"
	cause error
	// segs are the path's segments, innermost first, as the error
	// unwinds: ".Field", "[]" (a slice or array element), "[key]".
	segs []string
	// root is the outermost struct type seen so far; segs[:rootAt] are
	// the segments below it.
	root   string
	rootAt int
}

func (e *pathError) Error() string {
	if e.root == "" {
		return e.cause.Error()
	}
	var b strings.Builder
	b.WriteString("manager: cannot ")
	b.WriteString(e.op)
	b.WriteString(" field ")
	b.WriteString(e.root)
	segs := slices.Clone(e.segs[:e.rootAt])
	slices.Reverse(segs)
	for _, s := range segs {
		b.WriteString(s)
	}
	b.WriteString(": ")
	if u, ok := e.cause.(*unencodableError); ok {
		b.WriteString(u.short())
	} else {
		b.WriteString(strings.TrimPrefix(e.cause.Error(), "manager: "))
	}
	return b.String()
}

func (e *pathError) Unwrap() error { return e.cause }

// asPathError turns err into a *pathError to extend, or nil for an error
// that carries no path (the depth limit).
func asPathError(err error, op string) *pathError {
	if pe, ok := err.(*pathError); ok {
		return pe
	}
	if _, ok := err.(*unencodableError); ok {
		return &pathError{op: op, cause: err}
	}
	if op == "decode" {
		return &pathError{op: op, cause: err}
	}
	return nil
}

// inField records that err happened in field name of struct type t.
func inField(err error, op string, t reflect.Type, name string) error {
	pe := asPathError(err, op)
	if pe == nil {
		return err
	}
	pe.segs = append(pe.segs, "."+name)
	pe.root, pe.rootAt = typeName(t), len(pe.segs)
	return pe
}

// inElem records that err happened in an element of a slice or array
// (key nil) or in the value of a map's key.
func inElem(err error, op string, key *reflect.Value) error {
	pe := asPathError(err, op)
	if pe == nil {
		return err
	}
	if key == nil {
		pe.segs = append(pe.segs, "[]")
	} else if key.Kind() == reflect.String {
		pe.segs = append(pe.segs, fmt.Sprintf("[%q]", key.String()))
	} else {
		pe.segs = append(pe.segs, fmt.Sprintf("[%v]", key.Interface()))
	}
	return pe
}
