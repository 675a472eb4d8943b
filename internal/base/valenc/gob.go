// SPDX-License-Identifier: Apache-2.0

package valenc

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"io"
	"reflect"
	"sync"
)

// Every gob payload is a self-contained gob stream: the type definitions,
// then the value. Building a gob.Encoder and Decoder per message, though,
// costs far more than the message (type compilation, tens of
// microseconds). For types whose definitions are static (no interface
// values inside), the codec keeps one long-lived Encoder per type and
// prepends the definitions that its first message carried, and one
// long-lived Decoder per type, primed with those same definitions, that
// decodes any payload starting with exactly those bytes. The bytes on the
// wire are the same as a fresh encoder's; anything unexpected falls back to
// a fresh decoder.

type gobEnc struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	enc    *gob.Encoder
	prefix []byte // type definitions a fresh encoder sends before the value
}

type gobDec struct {
	mu     sync.Mutex
	r      sliceReader
	dec    *gob.Decoder
	prefix []byte
	zero   []byte // a zero value's message, to prime dec
}

var (
	gobEncs   sync.Map // reflect.Type -> *gobEnc
	gobDecs   sync.Map // reflect.Type (the pointer given to Unmarshal) -> *gobDec
	cacheable sync.Map // reflect.Type -> bool
)

// staticType reports whether t's gob type definitions do not depend on
// the value (no interface anywhere inside).
func staticType(t reflect.Type) bool {
	if ok, found := cacheable.Load(t); found {
		return ok.(bool)
	}
	ok := walkStatic(t, map[reflect.Type]bool{})
	cacheable.Store(t, ok)
	return ok
}

func walkStatic(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return true
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return false
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return walkStatic(t.Elem(), seen)
	case reflect.Map:
		return walkStatic(t.Key(), seen) && walkStatic(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if !walkStatic(t.Field(i).Type, seen) {
				return false
			}
		}
	}
	return true
}

// GobMarshal encodes v as one self-contained gob stream, with the cached
// encoder of v's type when its type definitions are static.
func GobMarshal(v any) ([]byte, error) {
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer && reflect.ValueOf(v).IsNil() {
		// gob panics on a nil pointer: say it as an error.
		return nil, fmt.Errorf("valenc: gob cannot encode a nil %v", t)
	}
	if t == nil || !staticType(t) {
		var buf bytes.Buffer
		err := gob.NewEncoder(&buf).Encode(v)
		return buf.Bytes(), err
	}
	x, _ := gobEncs.LoadOrStore(t, new(gobEnc))
	e := x.(*gobEnc)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.enc == nil {
		e.buf.Reset()
		enc := gob.NewEncoder(&e.buf)
		if err := enc.Encode(v); err != nil {
			return nil, err
		}
		first := bytes.Clone(e.buf.Bytes())
		e.buf.Reset()
		if err := enc.Encode(v); err != nil {
			return nil, err
		}
		if e.buf.Len() > len(first) {
			return first, nil // not the expected shape: stay uncached
		}
		e.enc, e.prefix = enc, first[:len(first)-e.buf.Len()]
		return first, nil
	}
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		e.enc = nil // the stream's state is unknown now: start afresh
		return nil, err
	}
	out := make([]byte, len(e.prefix)+e.buf.Len())
	copy(out, e.prefix)
	copy(out[len(e.prefix):], e.buf.Bytes())
	return out, nil
}

// GobUnmarshal decodes one gob stream into v (a pointer), with the primed
// decoder of v's type when data starts with its type definitions.
func GobUnmarshal(data []byte, v any) error {
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer && staticType(t) {
		if ok, err := gobDecodeCached(t, data, v); ok {
			return err
		}
	}
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}

// gobDecodeCached decodes data with the primed decoder for t if data
// starts with t's type definitions; ok=false means "use a fresh decoder".
func gobDecodeCached(t reflect.Type, data []byte, v any) (ok bool, err error) {
	if t.Elem().Kind() == reflect.Pointer {
		return false, nil // decoding into a **T: a fresh decoder allocates the *T
	}
	x, found := gobDecs.Load(t)
	if !found {
		zero, err := GobMarshal(reflect.New(t.Elem()).Elem().Interface())
		if err != nil {
			return false, nil
		}
		x, _ = gobEncs.Load(t.Elem())
		if x == nil {
			return false, nil
		}
		e := x.(*gobEnc)
		e.mu.Lock()
		prefix := e.prefix
		e.mu.Unlock()
		if prefix == nil || !bytes.HasPrefix(zero, prefix) {
			return false, nil
		}
		x, _ = gobDecs.LoadOrStore(t, &gobDec{prefix: prefix, zero: zero})
	}
	d := x.(*gobDec)
	if !bytes.HasPrefix(data, d.prefix) {
		return false, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dec == nil {
		d.r.b = d.zero
		d.dec = gob.NewDecoder(&d.r)
		if err := d.dec.Decode(reflect.New(t.Elem()).Interface()); err != nil || len(d.r.b) != 0 {
			d.dec = nil
			return false, nil
		}
	}
	d.r.b = data[len(d.prefix):]
	if err := d.dec.Decode(v); err != nil || len(d.r.b) != 0 {
		// Let a fresh decoder give the authoritative answer.
		d.dec, d.r.b = nil, nil
		return false, nil
	}
	d.r.b = nil
	return true, nil
}

// sliceReader is an io.ByteReader over a slice that the decoder reads
// exactly (gob does not buffer a ByteReader).
type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func (r *sliceReader) ReadByte() (byte, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c, nil
}
