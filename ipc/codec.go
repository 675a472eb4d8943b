// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// A Codec turns values into frame payloads and back. The receiving side
// decodes into a value of the type it expects, so payloads carry no type tag.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// DefaultCodec is the codec a Conn uses unless WithCodec says otherwise:
//   - a proto.Message is encoded in protobuf wire format;
//   - a []byte is sent as it is, so a CPython peer's recv_bytes() reads it
//     (decode into a *[]byte);
//   - anything else is one self-contained gob stream.
var DefaultCodec Codec = defaultCodec{}

type defaultCodec struct{}

// Encoding names the rule DefaultCodec applies to a value.
type Encoding int

const (
	EncodingRaw   Encoding = iota + 1 // []byte as is
	EncodingProto                     // protobuf wire format
	EncodingGob                       // a gob stream
)

// EncodingOf reports which rule DefaultCodec applies to v.
func EncodingOf(v any) Encoding {
	switch v.(type) {
	case []byte, *[]byte:
		return EncodingRaw
	case proto.Message:
		return EncodingProto
	default:
		return EncodingGob
	}
}

func (defaultCodec) Marshal(v any) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		return x, nil
	case *[]byte:
		return *x, nil
	case proto.Message:
		b, err := proto.Marshal(x)
		if err != nil {
			return nil, fmt.Errorf("ipc: encode %T: %w", v, err)
		}
		return b, nil
	}
	b, err := gobMarshal(v)
	if err != nil {
		return nil, fmt.Errorf("ipc: encode %T: %w", v, err)
	}
	return b, nil
}

func (defaultCodec) Unmarshal(data []byte, v any) error {
	switch x := v.(type) {
	case *[]byte:
		*x = data
		return nil
	case proto.Message:
		if err := proto.Unmarshal(data, x); err != nil {
			return fmt.Errorf("ipc: decode %T: %w", v, err)
		}
		return nil
	}
	if err := gobUnmarshal(data, v); err != nil {
		return fmt.Errorf("ipc: decode %T: %w", v, err)
	}
	return nil
}
