// SPDX-License-Identifier: Apache-2.0

package pickle

import (
	"cmp"
	"encoding/binary"
	"math"
	"math/big"
	"reflect"
	"slices"
	"unicode/utf8"
)

// batch is how many items one APPENDS, SETITEMS or ADDITEMS carries, as in
// CPython's pickler.
const batch = 1000

type encoder struct {
	c   *Codec
	buf []byte
}

func (e *encoder) marshal(v any) ([]byte, error) {
	e.buf = append(e.buf, opProto, byte(e.c.protocol))
	if err := e.value(reflect.ValueOf(v), 0); err != nil {
		return nil, err
	}
	e.buf = append(e.buf, opStop)
	if len(e.buf) > e.c.maxSize {
		return nil, &LimitError{Limit: "size", Max: int64(e.c.maxSize)}
	}
	return e.buf, nil
}

var (
	bigIntType    = reflect.TypeFor[big.Int]()
	tupleType     = reflect.TypeFor[Tuple]()
	setType       = reflect.TypeFor[Set]()
	frozenSetType = reflect.TypeFor[FrozenSet]()
	byteArrayType = reflect.TypeFor[ByteArray]()
	dictType      = reflect.TypeFor[Dict]()
	tokenType     = reflect.TypeFor[Token]()
	exceptionType = reflect.TypeFor[Exception]()
)

func (e *encoder) value(v reflect.Value, depth int) error {
	if depth > e.c.maxDepth {
		return &LimitError{Limit: "depth", Max: int64(e.c.maxDepth)}
	}
	if len(e.buf) > e.c.maxSize {
		return &LimitError{Limit: "size", Max: int64(e.c.maxSize)}
	}
	if !v.IsValid() {
		e.buf = append(e.buf, opNone)
		return nil
	}
	switch v.Type() {
	case bigIntType:
		if v.CanAddr() {
			e.bigInt(v.Addr().Interface().(*big.Int))
		} else {
			x := v.Interface().(big.Int)
			e.bigInt(&x)
		}
		return nil
	case tupleType:
		return e.tuple(v, depth)
	case setType:
		return e.set(v, depth, false)
	case frozenSetType:
		return e.set(v, depth, true)
	case byteArrayType:
		e.byteArray(v.Bytes())
		return nil
	case dictType:
		if !v.CanAddr() {
			c := reflect.New(dictType)
			c.Elem().Set(v)
			v = c.Elem()
		}
		return e.dict(v.Addr().Interface().(*Dict), depth)
	case tokenType:
		return e.token(v.Interface().(Token), depth)
	case exceptionType:
		x := v.Interface().(Exception)
		return e.exception(&x, depth)
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			e.buf = append(e.buf, opNone)
			return nil
		}
		return e.value(v.Elem(), depth)
	case reflect.Bool:
		if v.Bool() {
			e.buf = append(e.buf, opNewTrue)
		} else {
			e.buf = append(e.buf, opNewFalse)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.int(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := v.Uint()
		if u <= math.MaxInt64 {
			e.int(int64(u))
		} else {
			e.bigInt(new(big.Int).SetUint64(u))
		}
	case reflect.Float32, reflect.Float64:
		e.buf = append(e.buf, opBinFloat)
		e.buf = binary.BigEndian.AppendUint64(e.buf, math.Float64bits(v.Float()))
	case reflect.String:
		return e.str(v.String())
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			e.bytes(v.Bytes())
			return nil
		}
		return e.list(v, depth)
	case reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, v.Len())
			reflect.Copy(reflect.ValueOf(b), v)
			e.bytes(b)
			return nil
		}
		return e.list(v, depth)
	case reflect.Map:
		return e.goMap(v, depth)
	case reflect.Struct:
		return e.goStruct(v, depth)
	default:
		return &UnsupportedTypeError{Type: v.Type()}
	}
	return nil
}

func (e *encoder) int(i int64) {
	switch {
	case i >= 0 && i <= 0xff:
		e.buf = append(e.buf, opBinInt1, byte(i))
	case i >= 0 && i <= 0xffff:
		e.buf = append(e.buf, opBinInt2, byte(i), byte(i>>8))
	case i >= math.MinInt32 && i <= math.MaxInt32:
		e.buf = append(e.buf, opBinInt)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(int32(i)))
	default:
		e.bigInt(big.NewInt(i))
	}
}

// bigInt writes LONG1 or LONG4: little-endian two's complement, as short
// as CPython's encode_long makes it.
func (e *encoder) bigInt(n *big.Int) {
	if n.IsInt64() && n.Int64() >= math.MinInt32 && n.Int64() <= math.MaxInt32 {
		e.int(n.Int64())
		return
	}
	// Two's complement in nbytes: for n < 0, 2^(8*nbytes) + n.
	nbytes := n.BitLen()/8 + 1
	var mag *big.Int
	if n.Sign() < 0 {
		mag = new(big.Int).Lsh(big.NewInt(1), uint(8*nbytes))
		mag.Add(mag, n)
		// A shorter form exists when the top byte is 0xff and the next has its top bit set.
		be := mag.FillBytes(make([]byte, nbytes))
		if nbytes > 1 && be[0] == 0xff && be[1]&0x80 != 0 {
			be = be[1:]
		}
		e.long(be)
		return
	}
	mag = n
	be := mag.FillBytes(make([]byte, nbytes))
	if nbytes > 1 && be[0] == 0 && be[1]&0x80 == 0 {
		be = be[1:]
	}
	e.long(be)
}

func (e *encoder) long(be []byte) {
	if len(be) < 256 {
		e.buf = append(e.buf, opLong1, byte(len(be)))
	} else {
		e.buf = append(e.buf, opLong4)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(len(be)))
	}
	for i := len(be) - 1; i >= 0; i-- {
		e.buf = append(e.buf, be[i])
	}
}

func (e *encoder) str(s string) error {
	if !utf8.ValidString(s) {
		return &UnsupportedTypeError{Type: reflect.TypeFor[string](), Reason: "a str must be valid UTF-8 (send []byte for bytes)"}
	}
	e.withLen(opShortBinUnicode, opBinUnicode, opBinUnicode8, len(s))
	e.buf = append(e.buf, s...)
	return nil
}

func (e *encoder) bytes(b []byte) {
	e.withLen(opShortBinBytes, opBinBytes, opBinBytes8, len(b))
	e.buf = append(e.buf, b...)
}

func (e *encoder) withLen(op1, op4, op8 byte, n int) {
	switch {
	case n < 256:
		e.buf = append(e.buf, op1, byte(n))
	case uint64(n) <= math.MaxUint32: // uint64: an int may be 32 bits
		e.buf = append(e.buf, op4)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(n))
	default:
		e.buf = append(e.buf, op8)
		e.buf = binary.LittleEndian.AppendUint64(e.buf, uint64(n))
	}
}

// byteArray writes what CPython writes: BYTEARRAY8 in protocol 5,
// builtins.bytearray(bytes) in protocol 4.
func (e *encoder) byteArray(b []byte) {
	if e.c.protocol >= 5 {
		e.buf = append(e.buf, opByteArray8)
		e.buf = binary.LittleEndian.AppendUint64(e.buf, uint64(len(b)))
		e.buf = append(e.buf, b...)
		return
	}
	e.global("builtins", "bytearray")
	e.bytes(b)
	e.buf = append(e.buf, opTuple1, opReduce)
}

func (e *encoder) global(module, name string) {
	e.str(module)
	e.str(name)
	e.buf = append(e.buf, opStackGlobal)
}

func (e *encoder) tuple(v reflect.Value, depth int) error {
	n := v.Len()
	switch n {
	case 0:
		e.buf = append(e.buf, opEmptyTuple)
		return nil
	case 1, 2, 3:
		for i := range n {
			if err := e.value(v.Index(i), depth+1); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, opTuple1+byte(n-1))
		return nil
	}
	e.buf = append(e.buf, opMark)
	for i := range n {
		if err := e.value(v.Index(i), depth+1); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, opTuple)
	return nil
}

func (e *encoder) list(v reflect.Value, depth int) error {
	e.buf = append(e.buf, opEmptyList)
	return e.batched(v.Len(), opAppends, func(i int) error { return e.value(v.Index(i), depth+1) })
}

// batched writes MARK, up to batch items, op, until n items are written.
func (e *encoder) batched(n int, op byte, item func(int) error) error {
	for start := 0; start < n; start += batch {
		end := min(start+batch, n)
		e.buf = append(e.buf, opMark)
		for i := start; i < end; i++ {
			if err := item(i); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, op)
	}
	return nil
}

func (e *encoder) set(v reflect.Value, depth int, frozen bool) error {
	// Items must be hashable for CPython to rebuild the set.
	for i := range v.Len() {
		if _, err := hashKey(v.Index(i).Interface(), nil); err != nil {
			return &UnsupportedTypeError{Type: v.Type(), Reason: err.Error()}
		}
	}
	if frozen {
		e.buf = append(e.buf, opMark)
		for i := range v.Len() {
			if err := e.value(v.Index(i), depth+1); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, opFrozenSet)
		return nil
	}
	e.buf = append(e.buf, opEmptySet)
	return e.batched(v.Len(), opAddItems, func(i int) error { return e.value(v.Index(i), depth+1) })
}

func (e *encoder) dict(d *Dict, depth int) error {
	e.buf = append(e.buf, opEmptyDict)
	return e.batched(d.Len(), opSetItems, func(i int) error {
		if err := e.value(reflect.ValueOf(d.keys[i]), depth+1); err != nil {
			return err
		}
		return e.value(reflect.ValueOf(d.vals[i]), depth+1)
	})
}

func (e *encoder) goMap(v reflect.Value, depth int) error {
	keys := v.MapKeys()
	sortKeys(keys)
	e.buf = append(e.buf, opEmptyDict)
	return e.batched(len(keys), opSetItems, func(i int) error {
		if err := e.value(keys[i], depth+1); err != nil {
			return err
		}
		return e.value(v.MapIndex(keys[i]), depth+1)
	})
}

// sortKeys orders map keys of basic kinds, so output is deterministic.
func sortKeys(keys []reflect.Value) {
	if len(keys) == 0 {
		return
	}
	switch keys[0].Kind() {
	case reflect.String:
		slices.SortFunc(keys, func(a, b reflect.Value) int { return cmp.Compare(a.String(), b.String()) })
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		slices.SortFunc(keys, func(a, b reflect.Value) int { return cmp.Compare(a.Int(), b.Int()) })
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		slices.SortFunc(keys, func(a, b reflect.Value) int { return cmp.Compare(a.Uint(), b.Uint()) })
	case reflect.Float32, reflect.Float64:
		slices.SortFunc(keys, func(a, b reflect.Value) int { return cmp.Compare(a.Float(), b.Float()) })
	}
}

func (e *encoder) goStruct(v reflect.Value, depth int) error {
	fields := structFields(v.Type())
	e.buf = append(e.buf, opEmptyDict)
	return e.batched(len(fields), opSetItems, func(i int) error {
		if err := e.str(fields[i].name); err != nil {
			return err
		}
		return e.value(v.FieldByIndex(fields[i].index), depth+1)
	})
}

func (e *encoder) token(t Token, depth int) error {
	e.global("multiprocessing.managers", "Token")
	e.buf = append(e.buf, opEmptyTuple, opNewObj)
	if err := e.str(t.TypeID); err != nil {
		return err
	}
	if err := e.value(reflect.ValueOf(t.Address), depth+1); err != nil {
		return err
	}
	if err := e.str(t.ID); err != nil {
		return err
	}
	e.buf = append(e.buf, opTuple3, opBuild)
	return nil
}

func (e *encoder) exception(x *Exception, depth int) error {
	if !allowedException(x.Module, x.Name) {
		return &UnsupportedTypeError{Type: exceptionType, Reason: "class " + x.Module + "." + x.Name + " is not in the allowlist"}
	}
	e.global(x.Module, x.Name)
	if err := e.tuple(reflect.ValueOf(x.Args), depth); err != nil {
		return err
	}
	e.buf = append(e.buf, opReduce)
	if x.State != nil && x.State.Len() > 0 {
		if err := e.dict(x.State, depth+1); err != nil {
			return err
		}
		e.buf = append(e.buf, opBuild)
	}
	return nil
}
