// SPDX-License-Identifier: Apache-2.0

package pickle

import (
	"fmt"
	"iter"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
)

// Tuple is a Python tuple.
type Tuple []any

// Set is a Python set: its items in the order the pickle listed them.
// The decoder does not remove items that Python would consider equal;
// CPython never sends any.
type Set []any

// FrozenSet is a Python frozenset, with the same conventions as [Set].
type FrozenSet []any

// ByteArray is a Python bytearray (a []byte decodes from and encodes to
// bytes).
type ByteArray []byte

// Token is multiprocessing.managers.Token, the reference to an object in a
// manager: the type id it was created with, the manager's address (a
// [Tuple] of host and port for TCP, a string path for a unix socket) and
// the object's id in that manager.
type Token struct {
	TypeID  string
	Address any
	ID      string
}

// Exception is a Python exception object from the allowlist (see the
// package documentation): its class, its args and, when the exception had
// attributes of its own, their dict. It is data: decoding it runs nothing.
type Exception struct {
	Module string // "builtins", "queue", "_queue" or "multiprocessing.managers"
	Name   string // the class name, e.g. "KeyError"
	Args   Tuple
	State  *Dict // nil unless the exception carried a __dict__
}

// Error formats the exception as Python's repr would, e.g. KeyError('zz').
func (e *Exception) Error() string {
	var b strings.Builder
	b.WriteString(e.Name)
	b.WriteByte('(')
	for i, a := range e.Args {
		if i > 0 {
			b.WriteString(", ")
		}
		writeRepr(&b, a, 0)
	}
	b.WriteByte(')')
	return b.String()
}

// A Dict is a Python dict: ordered, with keys of any hashable Python type
// (str, int, float, bool, None, bytes, Tuple, FrozenSet...). Keys that
// Python considers equal (1, 1.0 and True) are one key. The zero value is
// an empty dict. A Dict must not be copied after first use.
type Dict struct {
	keys  []any
	vals  []any
	index map[any]int // hashKey of each key -> its position
}

// NewDict returns a dict holding the given key, value pairs in order.
// It panics if a key is not hashable; use Set for untrusted keys.
func NewDict(kv ...any) *Dict {
	if len(kv)%2 != 0 {
		panic("pickle: NewDict needs key, value pairs")
	}
	d := &Dict{}
	for i := 0; i < len(kv); i += 2 {
		if err := d.Set(kv[i], kv[i+1]); err != nil {
			panic(err)
		}
	}
	return d
}

// Len returns the number of items.
func (d *Dict) Len() int {
	if d == nil {
		return 0
	}
	return len(d.keys)
}

// Get returns the value stored under a key equal (as in Python) to k.
func (d *Dict) Get(k any) (any, bool) {
	if d == nil || d.index == nil {
		return nil, false
	}
	h, err := hashKey(k, nil)
	if err != nil {
		return nil, false
	}
	i, ok := d.index[h]
	if !ok {
		return nil, false
	}
	return d.vals[i], true
}

// Set stores v under k. As in Python, an existing equal key keeps its
// place and its original key object. It fails for an unhashable key
// (a list, dict, set or bytearray, or a Go value with no Python form).
func (d *Dict) Set(k, v any) error {
	h, err := hashKey(k, nil)
	if err != nil {
		return err
	}
	d.setHashed(h, k, v)
	return nil
}

func (d *Dict) setHashed(h any, k, v any) {
	if d.index == nil {
		d.index = make(map[any]int)
	}
	if i, ok := d.index[h]; ok {
		d.vals[i] = v
		return
	}
	d.index[h] = len(d.keys)
	d.keys = grow(d.keys, 1)
	d.keys = append(d.keys, k)
	d.vals = grow(d.vals, 1)
	d.vals = append(d.vals, v)
}

// grow makes room for n more items, doubling the capacity (append grows
// large slices by a quarter, which allocates five times the final size in
// all; doubling allocates twice).
func grow[T any](s []T, n int) []T {
	if len(s)+n <= cap(s) {
		return s
	}
	c := max(2*cap(s), len(s)+n, 8)
	out := make([]T, len(s), c)
	copy(out, s)
	return out
}

// All iterates over the items in order.
func (d *Dict) All() iter.Seq2[any, any] {
	return func(yield func(any, any) bool) {
		if d == nil {
			return
		}
		for i, k := range d.keys {
			if !yield(k, d.vals[i]) {
				return
			}
		}
	}
}

// Keys returns the keys in order.
func (d *Dict) Keys() []any {
	if d == nil {
		return nil
	}
	return slices.Clone(d.keys)
}

// String formats the dict as Python's repr would.
func (d *Dict) String() string {
	var b strings.Builder
	writeRepr(&b, d, 0)
	return b.String()
}

// errUnhashable reports a key Python would refuse with a TypeError.
type errUnhashable struct{ typ string }

func (e errUnhashable) Error() string { return "pickle: unhashable type: '" + e.typ + "'" }
func (e errUnhashable) Unwrap() error { return ErrMalformed }

// Keys of Dict.index and of set deduplication: a value such that two
// values have the same key exactly when Python finds them equal (for the
// types this package knows: 1 == 1.0 == True, -0.0 == 0.0, a NaN equals
// nothing). str, int and float keys are Go values; the others are
// wrapped or encoded so that no two types collide.
type (
	noneKey  struct{}
	bytesKey string
	canonKey string // the canonical encoding of an int, tuple or frozenset
)

// hashKey returns v's key, or an error for a value Python cannot hash.
// cache holds the encodings already computed for decoder-internal tuples
// and frozensets.
func hashKey(v any, cache map[any]string) (any, error) {
	switch x := v.(type) {
	case nil:
		return noneKey{}, nil
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case int64:
		if x > -1<<62 && x < 1<<62 {
			return x, nil
		}
	case int:
		if int64(x) > -1<<62 && int64(x) < 1<<62 { // int64: an int may be 32 bits
			return int64(x), nil
		}
	case *big.Int:
		if x.IsInt64() && x.Int64() > -1<<62 && x.Int64() < 1<<62 {
			return x.Int64(), nil
		}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<62 {
			return int64(x), nil
		}
		if math.IsNaN(x) || math.IsInf(x, 0) || x != math.Trunc(x) {
			return x, nil
		}
	case string:
		return x, nil
	case []byte:
		return bytesKey(x), nil
	case *Token, *Exception:
		return x, nil
	}
	b, err := appendHashKey(nil, v, cache, 0)
	return canonKey(b), err
}

func appendHashKey(b []byte, v any, cache map[any]string, depth int) ([]byte, error) {
	if depth > hashDepthMax {
		return b, &LimitError{Limit: "depth", Max: hashDepthMax}
	}
	switch x := v.(type) {
	case nil:
		return append(b, 'N'), nil
	case bool:
		if x {
			return append(b, "i1;"...), nil
		}
		return append(b, "i0;"...), nil
	case int64:
		return append(strconv.AppendInt(append(b, 'i'), x, 10), ';'), nil
	case int:
		return append(strconv.AppendInt(append(b, 'i'), int64(x), 10), ';'), nil
	case *big.Int:
		if x.IsInt64() {
			return append(strconv.AppendInt(append(b, 'i'), x.Int64(), 10), ';'), nil
		}
		return append(x.Append(append(b, 'i'), 10), ';'), nil
	case float64:
		if !math.IsInf(x, 0) && !math.IsNaN(x) && x == math.Trunc(x) {
			if math.Abs(x) < 1<<62 {
				return append(strconv.AppendInt(append(b, 'i'), int64(x), 10), ';'), nil
			}
			bi, _ := big.NewFloat(x).Int(nil)
			return append(bi.Append(append(b, 'i'), 10), ';'), nil
		}
		return append(strconv.AppendUint(append(b, 'f'), math.Float64bits(x), 16), ';'), nil
	case string:
		b = strconv.AppendInt(append(b, 's'), int64(len(x)), 10)
		return append(append(b, ':'), x...), nil
	case []byte:
		b = strconv.AppendInt(append(b, 'b'), int64(len(x)), 10)
		return append(append(b, ':'), x...), nil
	case Tuple:
		return appendSeqKey(b, 't', x, cache, depth)
	case *pyTuple:
		if k, ok := cache[x]; ok {
			return append(b, k...), nil
		}
		start := len(b)
		b, err := appendSeqKey(b, 't', x.items, cache, depth)
		if err == nil && cache != nil {
			cache[x] = string(b[start:])
		}
		return b, err
	case FrozenSet:
		return appendSetKey(b, x, cache, depth)
	case *pyFrozen:
		if k, ok := cache[x]; ok {
			return append(b, k...), nil
		}
		start := len(b)
		b, err := appendSetKey(b, x.items, cache, depth)
		if err == nil && cache != nil {
			cache[x] = string(b[start:])
		}
		return b, err
	case *Token:
		return fmt.Appendf(b, "o%p;", x), nil
	case *Exception:
		return fmt.Appendf(b, "o%p;", x), nil
	}
	return b, errUnhashable{pyTypeName(v)}
}

const hashDepthMax = 1000

func appendSeqKey(b []byte, tag byte, items []any, cache map[any]string, depth int) ([]byte, error) {
	b = strconv.AppendInt(append(b, tag), int64(len(items)), 10)
	b = append(b, ':')
	var err error
	for _, it := range items {
		if b, err = appendHashKey(b, it, cache, depth+1); err != nil {
			return b, err
		}
	}
	return b, nil
}

func appendSetKey(b []byte, items []any, cache map[any]string, depth int) ([]byte, error) {
	keys := make([]string, 0, len(items))
	for _, it := range items {
		k, err := appendHashKey(nil, it, cache, depth+1)
		if err != nil {
			return b, err
		}
		keys = append(keys, string(k))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	b = strconv.AppendInt(append(b, 'F'), int64(len(keys)), 10)
	b = append(b, ':')
	for _, k := range keys {
		b = append(b, k...)
	}
	return b, nil
}

// pyTypeName names the Python type of a decoded value, for messages.
func pyTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int64, int, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case ByteArray:
		return "bytearray"
	case []any, *pyList:
		return "list"
	case Tuple, *pyTuple:
		return "tuple"
	case *Dict:
		return "dict"
	case Set, *pySet:
		return "set"
	case FrozenSet, *pyFrozen:
		return "frozenset"
	case *Token:
		return "Token"
	case *Exception:
		return "exception"
	case global:
		return "class"
	}
	return fmt.Sprintf("Go %T", v)
}
