// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"math"
	"reflect"
	"unsafe"

	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/internal/base/valenc"
	"github.com/multiproc/multiproc/ipc"
)

// Items are encoded by ipc.DefaultCodec's rules: a proto.Message in
// protobuf wire format, a []byte as it is, anything else as one gob
// stream. Types whose gob encoding is a single scalar (numbers, bools and
// strings, named or not, without GobEncode/MarshalBinary/MarshalText
// methods) take a fast path: the value is stored in 8 or 16 bytes (or
// as the string's bytes) instead of a gob stream. The decoded value is
// the one the codec would give; a consumer whose type differs from the
// producer's gets the codec's result too (the value is turned into its
// gob stream and decoded by the codec).

// fastKind is the fast path of a type.
type fastKind uint8

const (
	fastNone fastKind = iota
	fastBytes
	fastInt
	fastUint
	fastFloat
	fastComplex
	fastBool
	fastString
)

// typeInfo describes how T is encoded and decoded.
type typeInfo struct {
	fast    fastKind
	size    uintptr
	isProto bool // T is a pointer type implementing proto.Message
	elem    reflect.Type
}

var (
	gobEncoderType  = reflect.TypeFor[gob.GobEncoder]()
	binMarshalType  = reflect.TypeFor[encoding.BinaryMarshaler]()
	textMarshalType = reflect.TypeFor[encoding.TextMarshaler]()
	protoMsgType    = reflect.TypeFor[proto.Message]()
)

func infoOf[T any]() typeInfo {
	t := reflect.TypeFor[T]()
	ti := typeInfo{size: t.Size()}
	if t == reflect.TypeFor[[]byte]() {
		ti.fast = fastBytes
		return ti
	}
	if t.Kind() == reflect.Pointer && t.Implements(protoMsgType) {
		ti.isProto, ti.elem = true, t.Elem()
		return ti
	}
	for _, m := range []reflect.Type{gobEncoderType, binMarshalType, textMarshalType} {
		if t.Implements(m) || reflect.PointerTo(t).Implements(m) {
			return ti
		}
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		ti.fast = fastInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		ti.fast = fastUint
	case reflect.Float32, reflect.Float64:
		ti.fast = fastFloat
	case reflect.Complex64, reflect.Complex128:
		ti.fast = fastComplex
	case reflect.Bool:
		ti.fast = fastBool
	case reflect.String:
		ti.fast = fastString
	}
	return ti
}

// encoded is an item ready for the ring: a payload, or for scalars n
// bytes (1, 8 or 16) of bits, written straight into the ring. It is
// passed by value so that nothing escapes to the heap on the fast paths.
type encoded struct {
	tag     uint8
	n       int
	bits    [2]uint64
	payload []byte
}

func (e *encoded) size() int {
	if e.payload != nil {
		return len(e.payload)
	}
	return e.n
}

func encode[T any](ti *typeInfo, v T) (e encoded, err error) {
	p := unsafe.Pointer(&v)
	switch ti.fast {
	case fastBytes:
		e.tag, e.payload = tagRaw, *(*[]byte)(p)
		if e.payload == nil {
			e.payload = []byte{}
		}
		return e, nil
	case fastString:
		s := *(*string)(p)
		e.tag, e.payload = tagString, unsafe.Slice(unsafe.StringData(s), len(s))
		if e.payload == nil {
			e.payload = []byte{}
		}
		return e, nil
	case fastInt:
		var x int64
		switch ti.size {
		case 1:
			x = int64(*(*int8)(p))
		case 2:
			x = int64(*(*int16)(p))
		case 4:
			x = int64(*(*int32)(p))
		default:
			x = *(*int64)(p)
		}
		e.tag, e.n, e.bits[0] = tagInt, 8, uint64(x)
		return e, nil
	case fastUint:
		var x uint64
		switch ti.size {
		case 1:
			x = uint64(*(*uint8)(p))
		case 2:
			x = uint64(*(*uint16)(p))
		case 4:
			x = uint64(*(*uint32)(p))
		default:
			x = *(*uint64)(p)
		}
		e.tag, e.n, e.bits[0] = tagUint, 8, x
		return e, nil
	case fastFloat:
		x := 0.0
		if ti.size == 4 {
			x = float64(*(*float32)(p))
		} else {
			x = *(*float64)(p)
		}
		e.tag, e.n, e.bits[0] = tagFloat, 8, math.Float64bits(x)
		return e, nil
	case fastComplex:
		var x complex128
		if ti.size == 8 {
			x = complex128(*(*complex64)(p))
		} else {
			x = *(*complex128)(p)
		}
		e.tag, e.n = tagComplex, 16
		e.bits[0], e.bits[1] = math.Float64bits(real(x)), math.Float64bits(imag(x))
		return e, nil
	case fastBool:
		e.tag, e.n = tagBool, 1
		if *(*bool)(p) {
			e.bits[0] = 1
		}
		return e, nil
	}
	return encodeSlow(ti, v)
}

func encodeSlow[T any](ti *typeInfo, v T) (e encoded, err error) {
	b, err := ipc.DefaultCodec.Marshal(v)
	if err != nil {
		return e, fmt.Errorf("queue: encode %T: %w", v, err)
	}
	if b == nil {
		b = []byte{}
	}
	e.tag, e.payload = tagGob, b
	if ti.isProto {
		e.tag = tagProto
	}
	return e, nil
}

// decode turns a frame's payload into a T. It never panics, whatever the
// bytes (FuzzDecode).
func decode[T any](ti *typeInfo, tag uint8, data []byte) (T, error) {
	if v, ok, err := decodeFast[T](ti, tag, data); ok {
		return v, err
	}
	return decodeSlow[T](ti, tag, data)
}

// decodeFast decodes the frames of the fast paths (ok false for others);
// it keeps no reference to data.
func decodeFast[T any](ti *typeInfo, tag uint8, data []byte) (out T, ok bool, err error) {
	p := unsafe.Pointer(&out)
	switch {
	case tag == tagRaw && ti.fast == fastBytes:
		*(*[]byte)(p) = bytes.Clone(data)
		return out, true, nil
	case tag == tagString && ti.fast == fastString:
		*(*string)(p) = string(data)
		return out, true, nil
	case tag == tagInt && ti.fast == fastInt && len(data) == 8:
		x := int64(binary.LittleEndian.Uint64(data))
		switch ti.size {
		case 1:
			if x != int64(int8(x)) {
				return out, true, overflow[T](x)
			}
			*(*int8)(p) = int8(x)
		case 2:
			if x != int64(int16(x)) {
				return out, true, overflow[T](x)
			}
			*(*int16)(p) = int16(x)
		case 4:
			if x != int64(int32(x)) {
				return out, true, overflow[T](x)
			}
			*(*int32)(p) = int32(x)
		default:
			*(*int64)(p) = x
		}
		return out, true, nil
	case tag == tagUint && ti.fast == fastUint && len(data) == 8:
		x := binary.LittleEndian.Uint64(data)
		switch ti.size {
		case 1:
			if x != uint64(uint8(x)) {
				return out, true, overflow[T](x)
			}
			*(*uint8)(p) = uint8(x)
		case 2:
			if x != uint64(uint16(x)) {
				return out, true, overflow[T](x)
			}
			*(*uint16)(p) = uint16(x)
		case 4:
			if x != uint64(uint32(x)) {
				return out, true, overflow[T](x)
			}
			*(*uint32)(p) = uint32(x)
		default:
			*(*uint64)(p) = x
		}
		return out, true, nil
	case tag == tagFloat && ti.fast == fastFloat && len(data) == 8:
		x := math.Float64frombits(binary.LittleEndian.Uint64(data))
		if ti.size == 4 {
			*(*float32)(p) = float32(x)
		} else {
			*(*float64)(p) = x
		}
		return out, true, nil
	case tag == tagComplex && ti.fast == fastComplex && len(data) == 16:
		x := complex(math.Float64frombits(binary.LittleEndian.Uint64(data)),
			math.Float64frombits(binary.LittleEndian.Uint64(data[8:])))
		if ti.size == 8 {
			*(*complex64)(p) = complex64(x)
		} else {
			*(*complex128)(p) = x
		}
		return out, true, nil
	case tag == tagBool && ti.fast == fastBool && len(data) == 1:
		*(*bool)(p) = data[0] != 0
		return out, true, nil
	}
	return out, false, nil
}

// decodeSlow is the general path: the codec, given the bytes it would
// have produced.
func decodeSlow[T any](ti *typeInfo, tag uint8, data []byte) (T, error) {
	var zero T
	data, err := codecBytes(tag, data)
	if err != nil {
		return zero, &DecodeError{Err: err}
	}
	out := new(T)
	var target any = out
	if ti.isProto {
		m := reflect.New(ti.elem)
		target = m.Interface()
		*out = m.Interface().(T)
	} else if ti.fast == fastBytes {
		data = bytes.Clone(data)
	}
	if err := ipc.DefaultCodec.Unmarshal(data, target); err != nil {
		return zero, &DecodeError{Err: err}
	}
	return *out, nil
}

func overflow[T any](x any) error {
	return &DecodeError{Err: fmt.Errorf("value %v overflows %v", x, reflect.TypeFor[T]())}
}

// codecBytes returns the payload the codec would have produced for a
// fast-path frame (a gob stream of the value), or data itself.
func codecBytes(tag uint8, data []byte) ([]byte, error) {
	var v any
	switch tag {
	case tagRaw, tagProto, tagGob:
		return data, nil
	case tagString:
		v = string(data)
	case tagInt, tagUint, tagFloat:
		if len(data) != 8 {
			return nil, errCorrupt
		}
		x := binary.LittleEndian.Uint64(data)
		switch tag {
		case tagInt:
			v = int64(x)
		case tagUint:
			v = x
		default:
			v = math.Float64frombits(x)
		}
	case tagComplex:
		if len(data) != 16 {
			return nil, errCorrupt
		}
		v = complex(math.Float64frombits(binary.LittleEndian.Uint64(data)),
			math.Float64frombits(binary.LittleEndian.Uint64(data[8:])))
	case tagBool:
		if len(data) != 1 {
			return nil, errCorrupt
		}
		v = data[0] != 0
	default:
		return nil, errCorrupt
	}
	return valenc.GobMarshal(v)
}
