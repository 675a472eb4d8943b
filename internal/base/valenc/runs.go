// SPDX-License-Identifier: Apache-2.0

package valenc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"unsafe"

	"google.golang.org/protobuf/proto"
)

// A Run encodes a run of values of one type as a single payload, for two
// ends that are the same binary (a pool and its workers): plain data as
// its memory image, strings and byte slices length-prefixed, proto
// messages length-prefixed in wire format, anything else as one gob value
// (a []T) through the cached encoders. A Run is stateless and safe for
// concurrent use.
type Run[T any] interface {
	// Append appends the encoding of v to dst.
	Append(dst []byte, v []T) ([]byte, error)
	// Decode decodes exactly n values from b.
	Decode(b []byte, n int) ([]T, error)
	// DecodeShared is Decode whose byte slices (a run of []byte values)
	// alias b instead of being copied: a receiver that decodes from
	// shared memory lends them to their user for as long as b stays
	// valid. Each aliasing slice has its capacity cut to its length, so
	// an append copies instead of writing past it. Other types are
	// copied as Decode copies them.
	DecodeShared(b []byte, n int) ([]T, error)
	// Size returns the exact length of v's encoding and true when it is
	// known without encoding, and encoding v cannot fail (byte slices,
	// strings, plain data): a sender can then make room first and encode
	// straight into it (Append into dst[:0] of capacity Size). Otherwise
	// it returns 0 and false (gob and protobuf values).
	Size(v []T) (int, bool)
}

// RunOf returns the Run for T, by ClassOf's rules.
func RunOf[T any]() Run[T] {
	t := reflect.TypeFor[T]()
	switch ClassOf(t) {
	case String:
		return stringRun[T]{}
	case Bytes:
		return bytesRun[T]{}
	case Plain:
		return PlainRun[T]{size: int(t.Size())}
	case Proto:
		return protoRun[T]{elem: t.Elem()}
	}
	return gobRun[T]{}
}

// DecodeInto decodes len(dst) values into dst. Nothing is written to dst
// when it fails. Plain data is copied straight into dst; other types are
// decoded, then copied.
func DecodeInto[T any](r Run[T], b []byte, dst []T) error {
	if pr, ok := r.(PlainRun[T]); ok {
		if len(b) != len(dst)*pr.size {
			return fmt.Errorf("valenc: %d bytes for %d values of %d bytes", len(b), len(dst), pr.size)
		}
		if len(dst) > 0 {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), len(b)), b)
		}
		return nil
	}
	v, err := r.Decode(b, len(dst))
	if err != nil {
		return err
	}
	copy(dst, v)
	return nil
}

// PlainRun is the Run of a plain type: the values' memory image.
type PlainRun[T any] struct{ size int }

func (c PlainRun[T]) Size(v []T) (int, bool) { return len(v) * c.size, true }

// DecodeShared copies, as Decode does: the values must be aligned for
// T, which a payload in a frame is not.
func (c PlainRun[T]) DecodeShared(b []byte, n int) ([]T, error) { return c.Decode(b, n) }

func (c PlainRun[T]) Append(dst []byte, v []T) ([]byte, error) {
	if len(v) == 0 {
		return dst, nil
	}
	return append(dst, unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*c.size)...), nil
}

func (c PlainRun[T]) Decode(b []byte, n int) ([]T, error) {
	if n < 0 || len(b) != n*c.size {
		return nil, fmt.Errorf("valenc: %d bytes for %d values of %d bytes", len(b), n, c.size)
	}
	v := make([]T, n)
	if n > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), n*c.size), b)
	}
	return v, nil
}

// prefixed splits b into n length-prefixed (uvarint) items and calls f
// with each; it fails on a short, long or malformed payload.
func prefixed(b []byte, n int, what string, f func(i int, item []byte) error) error {
	if n < 0 || n > len(b) {
		return fmt.Errorf("valenc: %d %s in %d bytes", n, what, len(b))
	}
	for i := range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return fmt.Errorf("valenc: bad length of %s %d", what, i)
		}
		if err := f(i, b[k:k+int(l)]); err != nil {
			return err
		}
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return fmt.Errorf("valenc: %d trailing bytes after %d %s", len(b), n, what)
	}
	return nil
}

type stringRun[T any] struct{}

func (stringRun[T]) Size(v []T) (int, bool) {
	n := 0
	for _, s := range v {
		l := reflect.ValueOf(s).Len()
		n += uvarintLen(uint64(l)) + l
	}
	return n, true
}

// DecodeShared copies: a string must never change.
func (r stringRun[T]) DecodeShared(b []byte, n int) ([]T, error) { return r.Decode(b, n) }

// uvarintLen is the length of v's uvarint encoding.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func (stringRun[T]) Append(dst []byte, v []T) ([]byte, error) {
	for _, s := range v {
		str := reflect.ValueOf(s).String()
		dst = binary.AppendUvarint(dst, uint64(len(str)))
		dst = append(dst, str...)
	}
	return dst, nil
}

func (stringRun[T]) Decode(b []byte, n int) ([]T, error) {
	if n < 0 || n > len(b) {
		return nil, fmt.Errorf("valenc: %d strings in %d bytes", n, len(b))
	}
	v := make([]T, n)
	rv := reflect.ValueOf(v)
	err := prefixed(b, n, "strings", func(i int, item []byte) error {
		rv.Index(i).SetString(string(item))
		return nil
	})
	return v, err
}

type bytesRun[T any] struct{}

func (bytesRun[T]) Append(dst []byte, v []T) ([]byte, error) {
	for _, s := range v {
		bs := reflect.ValueOf(s).Bytes()
		dst = binary.AppendUvarint(dst, uint64(len(bs)))
		dst = append(dst, bs...)
	}
	return dst, nil
}

func (bytesRun[T]) Size(v []T) (int, bool) {
	n := 0
	for _, s := range v {
		l := reflect.ValueOf(s).Len()
		n += uvarintLen(uint64(l)) + l
	}
	return n, true
}

func (r bytesRun[T]) Decode(b []byte, n int) ([]T, error) { return r.decode(b, n, false) }

func (r bytesRun[T]) DecodeShared(b []byte, n int) ([]T, error) { return r.decode(b, n, true) }

func (bytesRun[T]) decode(b []byte, n int, alias bool) ([]T, error) {
	if n < 0 || n > len(b) {
		return nil, fmt.Errorf("valenc: %d byte slices in %d bytes", n, len(b))
	}
	v := make([]T, n)
	rv := reflect.ValueOf(v)
	err := prefixed(b, n, "byte slices", func(i int, item []byte) error {
		if alias {
			// An empty item stays non-nil, as bytes.Clone leaves it.
			rv.Index(i).SetBytes(item[:len(item):len(item)])
		} else {
			rv.Index(i).SetBytes(bytes.Clone(item))
		}
		return nil
	})
	return v, err
}

// protoRun carries each message length-prefixed in wire format (a nil
// message travels as an empty one).
type protoRun[T any] struct{ elem reflect.Type }

func (protoRun[T]) Append(dst []byte, v []T) ([]byte, error) {
	for i, m := range v {
		msg, _ := any(m).(proto.Message)
		size := 0
		if msg != nil && !reflect.ValueOf(msg).IsNil() {
			size = proto.Size(msg)
		}
		dst = binary.AppendUvarint(dst, uint64(size))
		if size == 0 {
			continue
		}
		var err error
		if dst, err = (proto.MarshalOptions{}).MarshalAppend(dst, msg); err != nil {
			return dst, fmt.Errorf("valenc: encoding message %d: %w", i, err)
		}
	}
	return dst, nil
}

func (protoRun[T]) Size([]T) (int, bool) { return 0, false }

func (r protoRun[T]) DecodeShared(b []byte, n int) ([]T, error) { return r.Decode(b, n) }

func (r protoRun[T]) Decode(b []byte, n int) ([]T, error) {
	if n < 0 || n > len(b) {
		return nil, fmt.Errorf("valenc: %d messages in %d bytes", n, len(b))
	}
	v := make([]T, n)
	err := prefixed(b, n, "messages", func(i int, item []byte) error {
		m := reflect.New(r.elem).Interface().(proto.Message)
		if err := proto.Unmarshal(item, m); err != nil {
			return fmt.Errorf("valenc: decoding message %d: %w", i, err)
		}
		v[i] = m.(T)
		return nil
	})
	return v, err
}

type gobRun[T any] struct{}

func (gobRun[T]) Append(dst []byte, v []T) ([]byte, error) {
	if len(v) == 0 {
		return dst, nil
	}
	b, err := GobMarshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

func (gobRun[T]) Size([]T) (int, bool) { return 0, false }

// DecodeShared copies, as Decode does (gob decodes into new memory).
func (r gobRun[T]) DecodeShared(b []byte, n int) ([]T, error) { return r.Decode(b, n) }

func (gobRun[T]) Decode(b []byte, n int) ([]T, error) {
	var v []T
	if len(b) > 0 {
		if err := GobUnmarshal(b, &v); err != nil {
			return nil, err
		}
	}
	if len(v) != n {
		return nil, fmt.Errorf("valenc: decoded %d values, want %d", len(v), n)
	}
	return v, nil
}
