// SPDX-License-Identifier: Apache-2.0

package pickle

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// field is a struct field as Marshal and Unmarshal see it.
type field struct {
	name  string // the dict key: the tag's name, or the Go field name
	index []int
}

var fieldCache sync.Map // reflect.Type -> []field

// structFields lists the exported fields of t, with embedded structs'
// fields promoted as encoding/json does (one level of rules: a tagged or
// shallower name wins; ambiguous names are dropped).
func structFields(t reflect.Type) []field {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]field)
	}
	var fs []field
	for _, sf := range reflect.VisibleFields(t) {
		if !sf.IsExported() || sf.Anonymous && sf.Type.Kind() == reflect.Struct && sf.Tag.Get("pickle") == "" {
			continue
		}
		name := sf.Name
		if tag, ok := sf.Tag.Lookup("pickle"); ok {
			tag, _, _ = strings.Cut(tag, ",")
			if tag == "-" {
				continue
			}
			if tag != "" {
				name = tag
			}
		}
		fs = append(fs, field{name: name, index: sf.Index})
	}
	fieldCache.Store(t, fs)
	return fs
}

// assigner stores a decoded value into a Go value, bounding the work: a
// pickle may reference one object many times (memo), and copying it into
// value types each time could otherwise grow without bound.
type assigner struct {
	work     int
	budget   int
	maxDepth int
}

func assign(dst any, v any, work, maxDepth int) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("pickle: Unmarshal needs a non-nil pointer, not %T", dst)
	}
	if p, ok := dst.(*any); ok {
		*p = v
		return nil
	}
	a := assigner{work: work, budget: work, maxDepth: maxDepth}
	return a.store(rv.Elem(), v, "", 0)
}

func (a *assigner) mismatch(dst reflect.Value, v any, path, reason string) error {
	return &TypeError{Python: pyTypeName(v), Go: dst.Type(), Path: path, Reason: reason}
}

func (a *assigner) store(dst reflect.Value, v any, path string, depth int) error {
	a.work--
	if a.work < 0 {
		return &LimitError{Limit: "work", Max: int64(a.budget)}
	}
	if depth > a.maxDepth {
		return &LimitError{Limit: "depth", Max: int64(a.maxDepth)}
	}
	// Interfaces take the value as decoded, when it fits.
	if dst.Kind() == reflect.Interface {
		if v == nil {
			dst.SetZero()
			return nil
		}
		rv := reflect.ValueOf(v)
		if !rv.Type().AssignableTo(dst.Type()) {
			return a.mismatch(dst, v, path, "")
		}
		dst.Set(rv)
		return nil
	}
	if v == nil {
		dst.SetZero()
		return nil
	}
	// The package's own types and *big.Int take their Python type.
	switch dst.Type() {
	case bigIntType:
		n, ok := toBig(v)
		if !ok {
			return a.mismatch(dst, v, path, "")
		}
		dst.Set(reflect.ValueOf(*n))
		return nil
	case dictType:
		d, ok := v.(*Dict)
		if !ok {
			return a.mismatch(dst, v, path, "")
		}
		nd := &Dict{}
		for k, val := range d.All() {
			h, _ := hashKey(k, nil)
			nd.setHashed(h, k, val)
		}
		dst.Set(reflect.ValueOf(nd).Elem())
		return nil
	case tokenType:
		t, ok := v.(*Token)
		if !ok {
			return a.mismatch(dst, v, path, "")
		}
		dst.Set(reflect.ValueOf(*t))
		return nil
	case exceptionType:
		x, ok := v.(*Exception)
		if !ok {
			return a.mismatch(dst, v, path, "")
		}
		dst.Set(reflect.ValueOf(*x))
		return nil
	}
	if dst.Kind() == reflect.Pointer {
		if dst.Type() == reflect.PointerTo(bigIntType) {
			n, ok := toBig(v)
			if !ok {
				return a.mismatch(dst, v, path, "")
			}
			dst.Set(reflect.ValueOf(n))
			return nil
		}
		if rv := reflect.ValueOf(v); rv.Type() == dst.Type() {
			dst.Set(rv) // *Dict, *Token, *Exception as decoded
			return nil
		}
		if dst.IsNil() {
			dst.Set(reflect.New(dst.Type().Elem()))
		}
		return a.store(dst.Elem(), v, path, depth)
	}
	switch dst.Kind() {
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return a.mismatch(dst, v, path, "")
		}
		dst.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok := v.(int64)
		if !ok {
			return a.mismatch(dst, v, path, intReason(v))
		}
		if dst.OverflowInt(i) {
			return a.mismatch(dst, v, path, strconv.FormatInt(i, 10)+" overflows it")
		}
		dst.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		var u uint64
		switch x := v.(type) {
		case int64:
			if x < 0 {
				return a.mismatch(dst, v, path, strconv.FormatInt(x, 10)+" is negative")
			}
			u = uint64(x)
		case *big.Int:
			if !x.IsUint64() {
				return a.mismatch(dst, v, path, x.String()+" overflows it")
			}
			u = x.Uint64()
		default:
			return a.mismatch(dst, v, path, "")
		}
		if dst.OverflowUint(u) {
			return a.mismatch(dst, v, path, strconv.FormatUint(u, 10)+" overflows it")
		}
		dst.SetUint(u)
	case reflect.Float32, reflect.Float64:
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case int64:
			f = float64(x)
		case *big.Int:
			f, _ = new(big.Float).SetInt(x).Float64()
		default:
			return a.mismatch(dst, v, path, "")
		}
		if dst.Kind() == reflect.Float32 && !math.IsInf(f, 0) && math.Abs(f) > math.MaxFloat32 {
			return a.mismatch(dst, v, path, "overflows it")
		}
		dst.SetFloat(f)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return a.mismatch(dst, v, path, "")
		}
		dst.SetString(s)
	case reflect.Slice:
		if dst.Type().Elem().Kind() == reflect.Uint8 {
			if b, ok := asBytes(v); ok {
				dst.SetBytes(reflect.ValueOf(b).Convert(reflect.TypeFor[[]byte]()).Bytes())
				a.work -= len(b) / 64
				return nil
			}
		}
		items, ok := sequence(v)
		if !ok {
			return a.mismatch(dst, v, path, "")
		}
		s := reflect.MakeSlice(dst.Type(), len(items), len(items))
		for i, it := range items {
			if err := a.store(s.Index(i), it, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
		dst.Set(s)
	case reflect.Array:
		if dst.Type().Elem().Kind() == reflect.Uint8 {
			if b, ok := asBytes(v); ok {
				if len(b) != dst.Len() {
					return a.mismatch(dst, v, path, "length "+strconv.Itoa(len(b)))
				}
				reflect.Copy(dst, reflect.ValueOf([]byte(b)))
				return nil
			}
		}
		items, ok := sequence(v)
		if !ok {
			return a.mismatch(dst, v, path, "")
		}
		if len(items) != dst.Len() {
			return a.mismatch(dst, v, path, "length "+strconv.Itoa(len(items)))
		}
		for i, it := range items {
			if err := a.store(dst.Index(i), it, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		d, ok := v.(*Dict)
		if !ok {
			return a.mismatch(dst, v, path, "")
		}
		m := reflect.MakeMapWithSize(dst.Type(), d.Len())
		for k, val := range d.All() {
			kv := reflect.New(dst.Type().Key()).Elem()
			kpath := path + "[" + reprString(k) + "]"
			if err := a.store(kv, k, kpath+" (key)", depth+1); err != nil {
				return err
			}
			if !kv.Comparable() {
				return a.mismatch(kv, k, kpath+" (key)", "not comparable in Go")
			}
			vv := reflect.New(dst.Type().Elem()).Elem()
			if err := a.store(vv, val, kpath, depth+1); err != nil {
				return err
			}
			m.SetMapIndex(kv, vv)
		}
		dst.Set(m)
	case reflect.Struct:
		return a.storeStruct(dst, v, path, depth)
	default:
		return a.mismatch(dst, v, path, "")
	}
	return nil
}

// storeStruct fills a struct from a dict with str keys (by tag name, then
// field name, then field name ignoring case), or from a tuple or list of
// exactly as many items as the struct has fields, in order.
func (a *assigner) storeStruct(dst reflect.Value, v any, path string, depth int) error {
	fields := structFields(dst.Type())
	if items, ok := v.(Tuple); ok {
		if len(items) != len(fields) {
			return a.mismatch(dst, v, path, "a tuple of "+strconv.Itoa(len(items))+" for "+strconv.Itoa(len(fields))+" fields")
		}
		for i, f := range fields {
			if err := a.store(dst.FieldByIndex(f.index), items[i], path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	d, ok := v.(*Dict)
	if !ok {
		return a.mismatch(dst, v, path, "")
	}
	dst.SetZero()
	for k, val := range d.All() {
		name, ok := k.(string)
		if !ok {
			continue
		}
		f, ok := findField(fields, name)
		if !ok {
			continue
		}
		if err := a.store(dst.FieldByIndex(f.index), val, path+"."+f.name, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func findField(fields []field, name string) (field, bool) {
	for _, f := range fields {
		if f.name == name {
			return f, true
		}
	}
	for _, f := range fields {
		if strings.EqualFold(f.name, name) {
			return f, true
		}
	}
	return field{}, false
}

func toBig(v any) (*big.Int, bool) {
	switch x := v.(type) {
	case int64:
		return big.NewInt(x), true
	case *big.Int:
		return new(big.Int).Set(x), true
	}
	return nil, false
}

func intReason(v any) string {
	if x, ok := v.(*big.Int); ok {
		return x.String() + " overflows it (use *big.Int)"
	}
	return ""
}

func asBytes(v any) ([]byte, bool) {
	switch x := v.(type) {
	case []byte:
		return append([]byte{}, x...), true
	case ByteArray:
		return append([]byte{}, x...), true
	}
	return nil, false
}

func sequence(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case Tuple:
		return x, true
	case Set:
		return x, true
	case FrozenSet:
		return x, true
	}
	return nil, false
}
