// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"fmt"
	"math"
	"reflect"
	"sort"

	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// Limits on what one request may carry. A request past them is refused
// with an error; nothing of the announced size is allocated (frames are
// bounded by the connection's maximum frame size first).
const (
	// MaxDepth is the deepest nesting of lists and maps in a Value.
	MaxDepth = 64
	// MaxArgs is the most arguments one call may carry.
	MaxArgs = 1024
	// MaxNameLen is the longest type or method name.
	MaxNameLen = 256
	// MaxRefOps is the most reference operations in one RefOps request.
	MaxRefOps = 4096
	// DefaultMaxFrame is the default maximum size of one request or
	// response frame.
	DefaultMaxFrame = 64 << 20
)

// ---------------------------------------------------------------- Go → Value

var (
	nullValue   = &pb.Value{Kind: &pb.Value_Null{Null: true}}
	valueType   = reflect.TypeFor[*pb.Value]()
	errorType   = reflect.TypeFor[error]()
	proxierType = reflect.TypeFor[proxier]()
)

func intValue(i int64) *pb.Value      { return &pb.Value{Kind: &pb.Value_Int{Int: i}} }
func boolValue(b bool) *pb.Value      { return &pb.Value{Kind: &pb.Value_Bool{Bool: b}} }
func strValue(s string) *pb.Value     { return &pb.Value{Kind: &pb.Value_String_{String_: s}} }
func doubleValue(f float64) *pb.Value { return &pb.Value{Kind: &pb.Value_Double{Double: f}} }
func listValue(items []*pb.Value) *pb.Value {
	return &pb.Value{Kind: &pb.Value_List{List: &pb.List{Items: items}}}
}
func refValue(r *pb.ProxyRef) *pb.Value { return &pb.Value{Kind: &pb.Value_Proxy{Proxy: r}} }

// encoder turns Go values into Values. c is the client the values are
// sent through: a proxy of another manager cannot be sent through c.
type encoder struct {
	c *Client
	// server-side encoding of a custom method's result: values of a
	// registered type become new shared objects.
	newObject func(v reflect.Value, ti *typeInfo) (*pb.Value, error)
}

// toValue converts a Go value to the wire's Value, by the rules of the
// package doc's "Values" section.
func toValue(v any) (*pb.Value, error) { return (&encoder{}).encode(v) }

func (e *encoder) encode(v any) (*pb.Value, error) {
	switch x := v.(type) {
	case nil:
		return nullValue, nil
	case *pb.Value:
		if x == nil {
			return nullValue, nil
		}
		return x, nil
	case string:
		return strValue(x), nil
	case int:
		return intValue(int64(x)), nil
	case int64:
		return intValue(x), nil
	case bool:
		return boolValue(x), nil
	case float64:
		return doubleValue(x), nil
	case []byte:
		return &pb.Value{Kind: &pb.Value_Bytes{Bytes: x}}, nil
	case proxier:
		if h := handleOf(x); h == nil {
			return nullValue, nil // a nil proxy is null
		}
		return e.proxy(x)
	}
	return e.reflect(reflect.ValueOf(v), 0)
}

// handleOf returns p's handle, or nil for a nil or unbound proxy.
func handleOf(p proxier) *handle {
	if p == nil {
		return nil
	}
	if rv := reflect.ValueOf(p); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return nil
	}
	return p.proxyHandle()
}

func (e *encoder) proxy(p proxier) (*pb.Value, error) {
	h := handleOf(p)
	if h == nil {
		return nil, fmt.Errorf("manager: %T is not bound to a shared object", p)
	}
	if hc, _ := h.current(); e.c != nil && hc != e.c {
		network, address, _ := h.addr()
		if address == "" || network != e.c.network || address != e.c.address {
			return nil, fmt.Errorf("manager: a proxy of %s %d belongs to another manager", h.typeid, h.id)
		}
	}
	return refValue(&pb.ProxyRef{Id: h.id, Typeid: h.typeid}), nil
}

func (e *encoder) reflect(rv reflect.Value, depth int) (*pb.Value, error) {
	return e.value(rv, depth, 0)
}

// value encodes rv, found at depth, through hops pointers or interfaces
// in a row: a chain of pointers never deepens the Value, so it is bounded
// apart, and a pointer to itself is an error, not a hang.
func (e *encoder) value(rv reflect.Value, depth, hops int) (*pb.Value, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("manager: value nested deeper than %d", MaxDepth)
	}
	if !rv.IsValid() {
		return nullValue, nil
	}
	if rv.Type().Implements(proxierType) {
		if rv.Kind() == reflect.Pointer && rv.IsNil() {
			return nullValue, nil
		}
		return e.proxy(rv.Interface().(proxier))
	}
	if rv.Type() == valueType {
		if rv.IsNil() {
			return nullValue, nil
		}
		return rv.Interface().(*pb.Value), nil
	}
	if e.newObject != nil {
		if ti := customByType(rv.Type()); ti != nil {
			if rv.Kind() == reflect.Pointer && rv.IsNil() {
				return nullValue, nil
			}
			return e.newObject(rv, ti)
		}
	}
	switch rv.Kind() {
	case reflect.Bool:
		return boolValue(rv.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return intValue(rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := rv.Uint()
		if u > math.MaxInt64 {
			return &pb.Value{Kind: &pb.Value_Uint{Uint: u}}, nil
		}
		return intValue(int64(u)), nil
	case reflect.Float32, reflect.Float64:
		return doubleValue(rv.Float()), nil
	case reflect.String:
		return strValue(rv.String()), nil
	case reflect.Interface, reflect.Pointer:
		if rv.IsNil() {
			return nullValue, nil
		}
		if hops >= MaxDepth {
			return nil, fmt.Errorf("manager: a chain of more than %d pointers", MaxDepth)
		}
		return e.value(rv.Elem(), depth, hops+1)
	case reflect.Struct:
		return e.encodeStruct(rv, depth)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			if rv.IsNil() {
				return &pb.Value{Kind: &pb.Value_Bytes{Bytes: []byte{}}}, nil
			}
			return &pb.Value{Kind: &pb.Value_Bytes{Bytes: rv.Bytes()}}, nil
		}
		items := make([]*pb.Value, rv.Len())
		for i := range items {
			v, err := e.reflect(rv.Index(i), depth+1)
			if err != nil {
				return nil, inElem(err, "encode", nil)
			}
			items[i] = v
		}
		return listValue(items), nil
	case reflect.Map:
		keys := rv.MapKeys()
		entries := make([]*pb.Entry, 0, len(keys))
		for _, k := range keys {
			kv, err := e.reflect(k, depth+1)
			if err != nil {
				return nil, inElem(err, "encode", &k)
			}
			if _, err := keyOf(kv); err != nil {
				return nil, inElem(err, "encode", &k)
			}
			vv, err := e.reflect(rv.MapIndex(k), depth+1)
			if err != nil {
				return nil, inElem(err, "encode", &k)
			}
			entries = append(entries, &pb.Entry{Key: kv, Value: vv})
		}
		// Go maps have no order; sort for a deterministic wire form.
		sort.Slice(entries, func(i, j int) bool { return keyLess(entries[i].Key, entries[j].Key) })
		return &pb.Value{Kind: &pb.Value_Map{Map: &pb.Map{Entries: entries}}}, nil
	}
	return nil, &unencodableError{t: rv.Type()}
}

// ---------------------------------------------------------------- keys

// key is the server-side identity of a scalar Value used as a map key.
// Like Python, 1 and 1.0 are different keys only when their kinds differ
// (Go semantics: an int key and a float key are distinct).
type key struct {
	kind byte // 'n' null, 'b' bool, 'i' int, 'u' uint, 'f' double, 's' string, 'y' bytes
	i    uint64
	s    string
}

func keyOf(v *pb.Value) (key, error) {
	switch x := v.GetKind().(type) {
	case nil, *pb.Value_Null:
		return key{kind: 'n'}, nil
	case *pb.Value_Bool:
		if x.Bool {
			return key{kind: 'b', i: 1}, nil
		}
		return key{kind: 'b'}, nil
	case *pb.Value_Int:
		return key{kind: 'i', i: uint64(x.Int)}, nil
	case *pb.Value_Uint:
		return key{kind: 'u', i: x.Uint}, nil
	case *pb.Value_Double:
		return key{kind: 'f', i: math.Float64bits(x.Double)}, nil
	case *pb.Value_String_:
		return key{kind: 's', s: x.String_}, nil
	case *pb.Value_Bytes:
		return key{kind: 'y', s: string(x.Bytes)}, nil
	}
	return key{}, &typeError{fmt.Sprintf("unhashable key of kind %s", kindName(v))}
}

func keyLess(a, b *pb.Value) bool {
	ka, _ := keyOf(a)
	kb, _ := keyOf(b)
	if ka.kind != kb.kind {
		return ka.kind < kb.kind
	}
	switch ka.kind {
	case 'i':
		return int64(ka.i) < int64(kb.i)
	case 'f':
		return math.Float64frombits(ka.i) < math.Float64frombits(kb.i)
	}
	if ka.i != kb.i {
		return ka.i < kb.i
	}
	return ka.s < kb.s
}

func kindName(v *pb.Value) string {
	switch v.GetKind().(type) {
	case nil, *pb.Value_Null:
		return "null"
	case *pb.Value_Bool:
		return "bool"
	case *pb.Value_Int, *pb.Value_Uint:
		return "int"
	case *pb.Value_Double:
		return "double"
	case *pb.Value_String_:
		return "string"
	case *pb.Value_Bytes:
		return "bytes"
	case *pb.Value_List:
		return "list"
	case *pb.Value_Map:
		return "map"
	case *pb.Value_Proxy:
		return "proxy"
	}
	return "unknown"
}

// checkValue validates a Value received from the wire: depth, map keys
// hashable and unique.
func checkValue(v *pb.Value, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("manager: value nested deeper than %d", MaxDepth)
	}
	switch x := v.GetKind().(type) {
	case *pb.Value_List:
		for _, it := range x.List.GetItems() {
			if err := checkValue(it, depth+1); err != nil {
				return err
			}
		}
	case *pb.Value_Map:
		seen := make(map[key]struct{}, len(x.Map.GetEntries()))
		for _, e := range x.Map.GetEntries() {
			k, err := keyOf(e.GetKey())
			if err != nil {
				return err
			}
			if _, dup := seen[k]; dup {
				return fmt.Errorf("manager: duplicate map key")
			}
			seen[k] = struct{}{}
			if err := checkValue(e.GetValue(), depth+1); err != nil {
				return err
			}
		}
	case *pb.Value_Proxy:
		if x.Proxy == nil {
			return fmt.Errorf("manager: empty proxy reference")
		}
	}
	return nil
}

// walkRefs calls fn for every proxy reference inside v.
func walkRefs(v *pb.Value, fn func(*pb.ProxyRef)) {
	switch x := v.GetKind().(type) {
	case *pb.Value_Proxy:
		if x.Proxy != nil {
			fn(x.Proxy)
		}
	case *pb.Value_List:
		for _, it := range x.List.GetItems() {
			walkRefs(it, fn)
		}
	case *pb.Value_Map:
		for _, e := range x.Map.GetEntries() {
			walkRefs(e.GetValue(), fn)
		}
	}
}

// hasRefs reports whether v holds a proxy reference (fast path for scalars).
func hasRefs(v *pb.Value) bool {
	switch v.GetKind().(type) {
	case *pb.Value_Proxy, *pb.Value_List, *pb.Value_Map:
		found := false
		walkRefs(v, func(*pb.ProxyRef) { found = true })
		return found
	}
	return false
}

// ---------------------------------------------------------------- Value → Go

// decoder turns Values into Go values. Proxy references become proxies
// bound to c; each reference in a response is one reference the server
// counted for this connection, so each becomes a handle that owns it, and
// references the destination did not take are released.
type decoder struct {
	c    *Client
	refs map[*pb.ProxyRef]*handle
}

func newDecoder(c *Client, v *pb.Value) *decoder {
	d := &decoder{c: c}
	if c != nil && hasRefs(v) {
		d.refs = map[*pb.ProxyRef]*handle{}
		walkRefs(v, func(r *pb.ProxyRef) { d.refs[r] = c.newHandle(r) })
	}
	return d
}

// done releases the handles that were not taken.
func (d *decoder) done() {
	for _, h := range d.refs {
		h.release()
	}
}

func (d *decoder) take(r *pb.ProxyRef) *handle {
	h := d.refs[r]
	if h == nil {
		return nil
	}
	delete(d.refs, r)
	return h
}

// decodeInto stores v into the Go value dst points at.
func (d *decoder) decodeInto(v *pb.Value, dst reflect.Value, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("manager: value nested deeper than %d", MaxDepth)
	}
	t := dst.Type()
	if t == valueType {
		dst.Set(reflect.ValueOf(v))
		return nil
	}
	if r, ok := v.GetKind().(*pb.Value_Proxy); ok {
		return d.decodeProxy(r.Proxy, dst)
	}
	if reflect.PointerTo(t).Implements(binderType) || t.Implements(proxierType) {
		if _, null := v.GetKind().(*pb.Value_Null); null || v.GetKind() == nil {
			dst.SetZero()
			return nil
		}
		return mismatch(v, t)
	}
	switch x := v.GetKind().(type) {
	case nil, *pb.Value_Null:
		dst.SetZero()
		return nil
	case *pb.Value_Bool:
		switch t.Kind() {
		case reflect.Bool:
			dst.SetBool(x.Bool)
			return nil
		case reflect.Interface:
			return setIface(dst, x.Bool)
		}
	case *pb.Value_Int:
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			if dst.OverflowInt(x.Int) {
				return fmt.Errorf("manager: %d overflows %s", x.Int, t)
			}
			dst.SetInt(x.Int)
			return nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			if x.Int < 0 || dst.OverflowUint(uint64(x.Int)) {
				return fmt.Errorf("manager: %d overflows %s", x.Int, t)
			}
			dst.SetUint(uint64(x.Int))
			return nil
		case reflect.Float32, reflect.Float64:
			dst.SetFloat(float64(x.Int))
			return nil
		case reflect.Interface:
			return setIface(dst, x.Int)
		}
	case *pb.Value_Uint:
		switch t.Kind() {
		case reflect.Uint, reflect.Uint64, reflect.Uintptr:
			if dst.OverflowUint(x.Uint) {
				return fmt.Errorf("manager: %d overflows %s", x.Uint, t)
			}
			dst.SetUint(x.Uint)
			return nil
		case reflect.Float32, reflect.Float64:
			dst.SetFloat(float64(x.Uint))
			return nil
		case reflect.Interface:
			return setIface(dst, x.Uint)
		}
	case *pb.Value_Double:
		switch t.Kind() {
		case reflect.Float32, reflect.Float64:
			dst.SetFloat(x.Double)
			return nil
		case reflect.Interface:
			return setIface(dst, x.Double)
		}
	case *pb.Value_String_:
		switch t.Kind() {
		case reflect.Struct:
			if structInfo(t).text {
				return decodeText(x.String_, dst)
			}
		case reflect.String:
			dst.SetString(x.String_)
			return nil
		case reflect.Interface:
			return setIface(dst, x.String_)
		}
	case *pb.Value_Bytes:
		switch {
		case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
			b := reflect.MakeSlice(t, len(x.Bytes), len(x.Bytes))
			reflect.Copy(b, reflect.ValueOf(x.Bytes))
			dst.Set(b)
			return nil
		case t.Kind() == reflect.String:
			dst.SetString(string(x.Bytes))
			return nil
		case t.Kind() == reflect.Interface:
			return setIface(dst, append([]byte(nil), x.Bytes...))
		}
	case *pb.Value_List:
		items := x.List.GetItems()
		switch t.Kind() {
		case reflect.Slice:
			s := reflect.MakeSlice(t, len(items), len(items))
			for i, it := range items {
				if err := d.decodeInto(it, s.Index(i), depth+1); err != nil {
					return inElem(err, "decode", nil)
				}
			}
			dst.Set(s)
			return nil
		case reflect.Array:
			if len(items) != t.Len() {
				return fmt.Errorf("manager: a list of %d items does not fit %s", len(items), t)
			}
			for i, it := range items {
				if err := d.decodeInto(it, dst.Index(i), depth+1); err != nil {
					return inElem(err, "decode", nil)
				}
			}
			return nil
		case reflect.Interface:
			s := make([]any, len(items))
			sv := reflect.ValueOf(s)
			for i, it := range items {
				if err := d.decodeInto(it, sv.Index(i), depth+1); err != nil {
					return err
				}
			}
			return setIface(dst, s)
		}
	case *pb.Value_Map:
		if t.Kind() == reflect.Struct {
			return d.decodeStruct(x.Map, dst, depth)
		}
		entries := x.Map.GetEntries()
		mt := t
		if t.Kind() == reflect.Interface {
			mt = reflect.TypeFor[map[any]any]()
		}
		if mt.Kind() == reflect.Map {
			m := reflect.MakeMapWithSize(mt, len(entries))
			for _, e := range entries {
				k := reflect.New(mt.Key()).Elem()
				if err := d.decodeInto(e.GetKey(), k, depth+1); err != nil {
					return err
				}
				if !k.Comparable() {
					// bytes decoded into an interface key: not hashable in Go.
					return fmt.Errorf("manager: a %s key does not fit %s", kindName(e.GetKey()), mt)
				}
				val := reflect.New(mt.Elem()).Elem()
				if err := d.decodeInto(e.GetValue(), val, depth+1); err != nil {
					return inElem(err, "decode", &k)
				}
				m.SetMapIndex(k, val)
			}
			if t.Kind() == reflect.Interface {
				return setIface(dst, m.Interface())
			}
			dst.Set(m)
			return nil
		}
	}
	if t.Kind() == reflect.Pointer {
		p := reflect.New(t.Elem())
		if err := d.decodeInto(v, p.Elem(), depth); err != nil {
			return err
		}
		dst.Set(p)
		return nil
	}
	return mismatch(v, t)
}

func setIface(dst reflect.Value, x any) error {
	xv := reflect.ValueOf(x)
	if !xv.Type().AssignableTo(dst.Type()) {
		return fmt.Errorf("manager: a %s does not fit %s", xv.Type(), dst.Type())
	}
	dst.Set(xv)
	return nil
}

func mismatch(v *pb.Value, t reflect.Type) error {
	return fmt.Errorf("manager: cannot decode a %s value into %s", kindName(v), t)
}

func (d *decoder) decodeProxy(r *pb.ProxyRef, dst reflect.Value) error {
	t := dst.Type()
	h := d.take(r)
	if h == nil {
		return fmt.Errorf("manager: proxy reference to %s %d received outside a response", r.GetTypeid(), r.GetId())
	}
	switch {
	case t.Kind() == reflect.Pointer && t.Implements(binderType):
		p := reflect.New(t.Elem())
		p.Interface().(binder).bind(h)
		dst.Set(p)
		return nil
	case t.Kind() == reflect.Interface:
		o := &Object{}
		o.bind(h)
		if !reflect.TypeOf(o).AssignableTo(t) {
			h.release()
			return fmt.Errorf("manager: a proxy does not fit %s", t)
		}
		dst.Set(reflect.ValueOf(o))
		return nil
	}
	h.release()
	return fmt.Errorf("manager: cannot decode a proxy of %s into %s", r.GetTypeid(), t)
}

// decodeAs decodes v into a new T.
func decodeAs[T any](c *Client, v *pb.Value) (T, error) {
	var out T
	d := newDecoder(c, v)
	err := d.decodeInto(v, reflect.ValueOf(&out).Elem(), 0)
	d.done()
	return out, err
}
