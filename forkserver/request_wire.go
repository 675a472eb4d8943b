// SPDX-License-Identifier: Apache-2.0

package forkserver

import (
	"errors"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	fspb "github.com/multiproc/multiproc/proto/forkserver/v1"
)

// The Request is encoded by the program and decoded by the warm process
// by hand, with protowire, as the process package does with its
// bootstrap message: the reflection-driven protobuf runtime cost the warm
// process about 20 µs to decode one (measured between its wake-up and
// the function's start, with its coder built ahead by prewarm), on the
// path of every start. FuzzRequest checks that both agree with
// proto.Marshal and proto.Unmarshal.

var errRequestWire = errors.New("malformed protobuf")

// appendRequest appends the wire encoding of r to b, as proto.Marshal
// does (fields in number order, zero values left out).
func appendRequest(b []byte, r *fspb.Request) []byte {
	if len(r.Bootstrap) > 0 {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, r.Bootstrap)
	}
	for _, f := range []struct {
		num protowire.Number
		v   uint64
	}{{2, uint64(r.Files)}, {3, boolVarint(r.Daemon)}, {4, boolVarint(r.ReplaceEnv)}} {
		if f.v != 0 {
			b = protowire.AppendTag(b, f.num, protowire.VarintType)
			b = protowire.AppendVarint(b, f.v)
		}
	}
	for _, kv := range r.Env {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendString(b, kv)
	}
	if r.Name != "" {
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendString(b, r.Name)
	}
	if r.KeepStdio != 0 {
		b = protowire.AppendTag(b, 7, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.KeepStdio))
	}
	return b
}

func boolVarint(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

// decodeRequest decodes b as proto.Unmarshal would: the last of a
// repeated scalar wins, a known field of another wire type than the
// schema's is unknown, and unknown fields are skipped. Strings must be
// valid UTF-8 (proto3), as proto.Unmarshal checks. The bootstrap aliases
// b.
func decodeRequest(b []byte) (*fspb.Request, error) {
	r := new(fspb.Request)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return nil, errRequestWire
		}
		b = b[n:]
		want := protowire.BytesType
		switch num {
		case 2, 3, 4, 7:
			want = protowire.VarintType
		case 1, 5, 6:
		default:
			want = -1
		}
		if typ != want {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil, errRequestWire
			}
			b = b[n:]
			continue
		}
		if typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, errRequestWire
			}
			b = b[n:]
			switch num {
			case 2:
				r.Files = uint32(v)
			case 3:
				r.Daemon = v != 0
			case 4:
				r.ReplaceEnv = v != 0
			case 7:
				r.KeepStdio = uint32(v)
			}
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, errRequestWire
		}
		b = b[n:]
		switch num {
		case 1:
			r.Bootstrap = v // b is the frame's own buffer: no copy
		case 5, 6:
			if !utf8.Valid(v) {
				return nil, errRequestWire
			}
			if num == 5 {
				r.Env = append(r.Env, string(v))
			} else {
				r.Name = string(v)
			}
		}
	}
	return r, nil
}
