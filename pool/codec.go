// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"reflect"
	"unsafe"
)

// A sliceCodec encodes a run of values of one type as a single payload.
// Both ends are the same binary, so plain-old-data types travel as their
// memory image; strings and byte slices are length-prefixed; everything
// else is one gob value (a []T), so per-item overhead stays small.
type sliceCodec[T any] interface {
	encode(dst []byte, v []T) ([]byte, error)
	decode(b []byte, n int) ([]T, error)
}

// decodeInto decodes len(dst) values into dst. Nothing is written to dst
// when it fails. Plain-old-data is copied straight into dst; other types
// are decoded, then copied.
func decodeInto[T any](c sliceCodec[T], b []byte, dst []T) error {
	if pc, ok := c.(podCodec[T]); ok {
		if len(b) != len(dst)*pc.size {
			return fmt.Errorf("pool: %d bytes for %d values of %d bytes", len(b), len(dst), pc.size)
		}
		if len(dst) > 0 {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), len(b)), b)
		}
		return nil
	}
	v, err := c.decode(b, len(dst))
	if err != nil {
		return err
	}
	copy(dst, v)
	return nil
}

func newCodec[T any]() sliceCodec[T] {
	t := reflect.TypeFor[T]()
	switch {
	case t.Kind() == reflect.String:
		return stringCodec[T]{}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return bytesCodec[T]{}
	case isPOD(t) && t.Size() > 0:
		return podCodec[T]{size: int(t.Size())}
	}
	return gobCodec[T]{}
}

// isPOD reports whether t holds no pointers (its memory image is its
// value): booleans, numbers, and arrays and structs of them.
func isPOD(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Array:
		return isPOD(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !isPOD(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}

type podCodec[T any] struct{ size int }

func (c podCodec[T]) encode(dst []byte, v []T) ([]byte, error) {
	if len(v) == 0 {
		return dst, nil
	}
	return append(dst, unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*c.size)...), nil
}

func (c podCodec[T]) decode(b []byte, n int) ([]T, error) {
	if n < 0 || len(b) != n*c.size {
		return nil, fmt.Errorf("pool: %d bytes for %d values of %d bytes", len(b), n, c.size)
	}
	v := make([]T, n)
	if n > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), n*c.size), b)
	}
	return v, nil
}

type stringCodec[T any] struct{}

func (stringCodec[T]) encode(dst []byte, v []T) ([]byte, error) {
	for _, s := range v {
		str := reflect.ValueOf(s).String()
		dst = binary.AppendUvarint(dst, uint64(len(str)))
		dst = append(dst, str...)
	}
	return dst, nil
}

func (stringCodec[T]) decode(b []byte, n int) ([]T, error) {
	if n < 0 || n > len(b) {
		return nil, fmt.Errorf("pool: %d strings in %d bytes", n, len(b))
	}
	v := make([]T, n)
	rv := reflect.ValueOf(v)
	for i := range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("pool: bad string %d", i)
		}
		rv.Index(i).SetString(string(b[k : k+int(l)]))
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("pool: %d trailing bytes after %d strings", len(b), n)
	}
	return v, nil
}

type bytesCodec[T any] struct{}

func (bytesCodec[T]) encode(dst []byte, v []T) ([]byte, error) {
	for _, s := range v {
		bs := reflect.ValueOf(s).Bytes()
		dst = binary.AppendUvarint(dst, uint64(len(bs)))
		dst = append(dst, bs...)
	}
	return dst, nil
}

func (bytesCodec[T]) decode(b []byte, n int) ([]T, error) {
	if n < 0 || n > len(b) {
		return nil, fmt.Errorf("pool: %d byte slices in %d bytes", n, len(b))
	}
	v := make([]T, n)
	rv := reflect.ValueOf(v)
	for i := range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("pool: bad byte slice %d", i)
		}
		rv.Index(i).SetBytes(bytes.Clone(b[k : k+int(l)]))
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("pool: %d trailing bytes after %d byte slices", len(b), n)
	}
	return v, nil
}

type gobCodec[T any] struct{}

func (gobCodec[T]) encode(dst []byte, v []T) ([]byte, error) {
	if len(v) == 0 {
		return dst, nil
	}
	buf := bytes.NewBuffer(dst)
	if err := gob.NewEncoder(buf).Encode(v); err != nil {
		return dst, err
	}
	return buf.Bytes(), nil
}

func (gobCodec[T]) decode(b []byte, n int) ([]T, error) {
	var v []T
	if len(b) > 0 {
		if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&v); err != nil {
			return nil, err
		}
	}
	if len(v) != n {
		return nil, fmt.Errorf("pool: decoded %d values, want %d", len(v), n)
	}
	return v, nil
}
