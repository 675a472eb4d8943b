// SPDX-License-Identifier: Apache-2.0

// Package valenc is the one home of how multiproc turns Go values into
// bytes and back. Every module encodes by the same rules:
//
//   - a byte slice ([]byte or a named slice of bytes) is its bytes;
//   - a pointer to a proto.Message is its protobuf wire format;
//   - plain data (Plain: booleans, numbers, and arrays and structs of them,
//     no pointers anywhere) is its memory image, but only where both ends
//     are the same binary on the same machine (a pool's chunks, a value in
//     shared memory); a connection whose peer may be another build or
//     architecture encodes it with gob;
//   - a string is its bytes (length-prefixed in a run of values);
//   - anything else is one gob stream, through cached encoders and
//     decoders (GobMarshal, GobUnmarshal), so that a type's definitions are
//     compiled once per process and not once per message.
//
// ClassOf applies the rules to a type; Runs encodes runs of values of one
// type for a pool's chunks.
package valenc

import (
	"reflect"

	"google.golang.org/protobuf/proto"
)

// Class is the rule that encodes a type's values.
type Class uint8

const (
	// Gob: one gob stream.
	Gob Class = iota
	// Bytes: a byte slice, as it is.
	Bytes
	// String: a string's bytes.
	String
	// Plain: pointer-free fixed-size data, as its memory image (same
	// binary only; see the package doc).
	Plain
	// Proto: a pointer to a proto.Message, in protobuf wire format.
	Proto
)

func (c Class) String() string {
	switch c {
	case Bytes:
		return "bytes"
	case String:
		return "string"
	case Plain:
		return "plain"
	case Proto:
		return "proto"
	}
	return "gob"
}

var protoMessage = reflect.TypeFor[proto.Message]()

// ClassOf returns the rule for values of type t. A type that is Plain is
// reported as Plain even where the caller will use gob for it (a
// connection): the caller decides, by the package's rule.
func ClassOf(t reflect.Type) Class {
	switch {
	case t == nil:
		return Gob
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return Bytes
	case t.Kind() == reflect.Pointer && t.Implements(protoMessage):
		return Proto
	case t.Kind() == reflect.String:
		return String
	case t.Size() > 0 && IsPlain(t):
		return Plain
	}
	return Gob
}

// IsPlain reports whether t's memory image is its value: booleans,
// integers (uintptr too: it is a number, not a reference the collector
// follows), floats, complex numbers, and arrays and structs of them. A
// pointer, slice, map, string, interface, channel, function or
// unsafe.Pointer anywhere inside makes it not plain.
func IsPlain(t reflect.Type) bool {
	_, _, ok := PlainCheck(t)
	return ok
}

// PlainCheck is IsPlain with the reason: when t is not plain, path names
// the first offending element ("Inner.Names", "[0]", ...; empty for t
// itself) and kind its kind.
func PlainCheck(t reflect.Type) (path string, kind reflect.Kind, ok bool) {
	return plainWalk(t, "")
}

func plainWalk(t reflect.Type, path string) (string, reflect.Kind, bool) {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return "", 0, true
	case reflect.Array:
		return plainWalk(t.Elem(), path+"[0]")
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			var p string
			switch {
			case path != "":
				p = path + "." + f.Name
			case t.Name() != "":
				p = t.Name() + "." + f.Name
			default:
				p = f.Name
			}
			if bad, k, ok := plainWalk(f.Type, p); !ok {
				return bad, k, false
			}
		}
		return "", 0, true
	}
	return path, t.Kind(), false
}
