// SPDX-License-Identifier: Apache-2.0

package process

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	pb "github.com/multiproc/multiproc/proto/process/v1"
)

// The child decodes its bootstrap message and encodes its "started"
// status by hand with protowire: the reflection-driven protobuf runtime
// initialises its type information on first use, which would cost every
// child start about a tenth of a millisecond. FuzzBootstrap checks that
// this decoder agrees with proto.Unmarshal.

var errWire = errors.New("process: bad bootstrap message")

// startedFrame is the ChildStatus{started: true} frame.
var startedFrame = []byte{0, 0, 0, 2, 1<<3 | byte(protowire.VarintType), 1}

type wireReader struct {
	b   []byte
	err error
}

func (r *wireReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errWire, what)
	}
	r.b = nil
}

func (r *wireReader) tag() (protowire.Number, protowire.Type, bool) {
	if len(r.b) == 0 || r.err != nil {
		return 0, 0, false
	}
	num, typ, n := protowire.ConsumeTag(r.b)
	if n < 0 {
		r.fail("bad tag")
		return 0, 0, false
	}
	r.b = r.b[n:]
	return num, typ, true
}

func (r *wireReader) varint(typ protowire.Type) uint64 {
	if typ != protowire.VarintType {
		r.fail("wire type mismatch")
		return 0
	}
	v, n := protowire.ConsumeVarint(r.b)
	if n < 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) bytes(typ protowire.Type) []byte {
	if typ != protowire.BytesType {
		r.fail("wire type mismatch")
		return nil
	}
	v, n := protowire.ConsumeBytes(r.b)
	if n < 0 {
		r.fail("bad length")
		return nil
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) skip(num protowire.Number, typ protowire.Type) {
	n := protowire.ConsumeFieldValue(num, typ, r.b)
	if n < 0 {
		r.fail("bad field")
		return
	}
	r.b = r.b[n:]
}

// uint32s appends a repeated uint32 field, packed or not.
func (r *wireReader) uint32s(dst []uint32, typ protowire.Type) []uint32 {
	if typ == protowire.VarintType {
		return append(dst, uint32(r.varint(typ)))
	}
	sub := wireReader{b: r.bytes(typ)}
	for len(sub.b) > 0 && sub.err == nil {
		dst = append(dst, uint32(sub.varint(protowire.VarintType)))
	}
	if sub.err != nil {
		r.fail("bad packed field")
	}
	return dst
}

// fieldOK reports whether a field of wire type typ is the one the schema
// has (kinds lists the expected type per field number; repeated uint32
// fields accept both packed and unpacked). A mismatch is an unknown field
// for proto.Unmarshal too, so it is skipped.
func (r *wireReader) fieldOK(num protowire.Number, typ protowire.Type, kinds map[protowire.Number]protowire.Type) bool {
	want, known := kinds[num]
	if known && (typ == want || (want == packed && (typ == protowire.BytesType || typ == protowire.VarintType))) {
		return true
	}
	r.skip(num, typ)
	return false
}

const packed protowire.Type = -1

var (
	bootstrapKinds = map[protowire.Number]protowire.Type{
		1: protowire.BytesType, 2: protowire.BytesType, 3: protowire.BytesType, 4: protowire.BytesType,
		5: protowire.VarintType, 6: protowire.VarintType, 7: protowire.VarintType, 9: protowire.VarintType,
		10: protowire.VarintType, 11: protowire.BytesType, 12: packed, 13: protowire.BytesType,
		14: protowire.BytesType, 15: protowire.VarintType,
	}
	argumentKinds  = map[protowire.Number]protowire.Type{1: protowire.BytesType, 2: protowire.BytesType}
	valueKinds     = map[protowire.Number]protowire.Type{1: protowire.VarintType, 2: protowire.BytesType}
	handleKinds    = map[protowire.Number]protowire.Type{1: protowire.BytesType, 2: packed, 3: protowire.BytesType}
	inheritedKinds = map[protowire.Number]protowire.Type{1: protowire.BytesType, 2: protowire.BytesType}
)

func decodeBootstrap(b []byte) (*pb.Bootstrap, error) {
	r := wireReader{b: b}
	boot := new(pb.Bootstrap)
	for {
		num, typ, ok := r.tag()
		if !ok {
			break
		}
		if !r.fieldOK(num, typ, bootstrapKinds) {
			continue
		}
		switch num {
		case 1:
			boot.Function = string(r.bytes(typ))
		case 2:
			a, err := decodeArgument(r.bytes(typ))
			if err != nil {
				return nil, err
			}
			boot.Args = append(boot.Args, a)
		case 3:
			boot.Name = string(r.bytes(typ))
		case 4:
			boot.Authkey = append([]byte{}, r.bytes(typ)...)
		case 5:
			boot.LogLevel = int32(protowire.DecodeZigZag(r.varint(typ) & 0xFFFFFFFF))
		case 6:
			boot.Daemon = r.varint(typ) != 0
		case 7:
			boot.Status = uint32(r.varint(typ))
		case 9:
			boot.ParentPid = int64(r.varint(typ))
		case 10:
			boot.ParentStartTime = r.varint(typ)
		case 11:
			boot.StartMethod = string(r.bytes(typ))
		case 12:
			boot.Ident = r.uint32s(boot.Ident, typ)
		case 13:
			boot.Env = append(boot.Env, string(r.bytes(typ)))
		case 14:
			in, err := decodeInherited(r.bytes(typ))
			if err != nil {
				return nil, err
			}
			boot.Inherited = append(boot.Inherited, in)
		case 15:
			boot.TermGraceNs = int64(r.varint(typ))
		default:
			r.skip(num, typ)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return boot, nil
}

func decodeArgument(b []byte) (*pb.Argument, error) {
	// A message field that occurs more than once is merged, which is the
	// same as decoding the concatenation of its occurrences; a oneof case
	// replaces the other.
	r := wireReader{b: b}
	a := new(pb.Argument)
	var kind protowire.Number
	var body []byte
	for {
		num, typ, ok := r.tag()
		if !ok {
			break
		}
		if !r.fieldOK(num, typ, argumentKinds) {
			continue
		}
		v := r.bytes(typ)
		if num != kind {
			kind, body = num, nil
		}
		body = append(body, v...)
	}
	if r.err != nil {
		return nil, r.err
	}
	switch kind {
	case 1:
		v := new(pb.Value)
		s := wireReader{b: body}
		for {
			num, typ, ok := s.tag()
			if !ok {
				break
			}
			if !s.fieldOK(num, typ, valueKinds) {
				continue
			}
			switch num {
			case 1:
				v.Encoding = pb.Encoding(int32(s.varint(typ)))
			case 2:
				v.Data = append([]byte{}, s.bytes(typ)...)
			}
		}
		if s.err != nil {
			return nil, s.err
		}
		a.Kind = &pb.Argument_Value{Value: v}
	case 2:
		h, err := decodeHandleRef(body)
		if err != nil {
			return nil, err
		}
		a.Kind = &pb.Argument_Handle{Handle: h}
	}
	return a, nil
}

func decodeHandleRef(b []byte) (*pb.HandleRef, error) {
	r := wireReader{b: b}
	h := new(pb.HandleRef)
	for {
		num, typ, ok := r.tag()
		if !ok {
			break
		}
		if !r.fieldOK(num, typ, handleKinds) {
			continue
		}
		switch num {
		case 1:
			h.Kind = string(r.bytes(typ))
		case 2:
			h.Files = r.uint32s(h.Files, typ)
		case 3:
			h.Desc = append([]byte{}, r.bytes(typ)...)
		default:
			r.skip(num, typ)
		}
	}
	return h, r.err
}

func decodeInherited(b []byte) (*pb.Inherited, error) {
	r := wireReader{b: b}
	in := new(pb.Inherited)
	var handle []byte
	hasHandle := false
	for {
		num, typ, ok := r.tag()
		if !ok {
			break
		}
		if !r.fieldOK(num, typ, inheritedKinds) {
			continue
		}
		switch num {
		case 1:
			in.Key = string(r.bytes(typ))
		case 2:
			handle = append(handle, r.bytes(typ)...)
			hasHandle = true
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if hasHandle {
		h, err := decodeHandleRef(handle)
		if err != nil {
			return nil, err
		}
		in.Handle = h
	}
	return in, nil
}
