// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"fmt"
	"reflect"

	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/internal/base/valenc"
)

// A Codec turns values into frame payloads and back. The receiving side
// decodes into a value of the type it expects, so payloads carry no type tag.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// DefaultCodec is the codec a Conn uses unless UseCodec says otherwise.
// It follows multiproc's one set of encoding rules (internal/base/valenc)
// for a peer that may be another build or architecture:
//   - a proto.Message is encoded in protobuf wire format;
//   - a []byte (or a named slice of bytes) is sent as it is, so a CPython
//     peer's recv_bytes() reads it (decode into a *[]byte);
//   - anything else is one self-contained gob stream, through encoders and
//     decoders cached per type.
var DefaultCodec Codec = defaultCodec{}

type defaultCodec struct{}

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
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
		return rv.Bytes(), nil // a named slice of bytes
	}
	b, err := valenc.GobMarshal(v)
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
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() && valenc.ClassOf(rv.Type().Elem()) == valenc.Bytes {
		rv.Elem().SetBytes(data) // a named slice of bytes
		return nil
	}
	if err := valenc.GobUnmarshal(data, v); err != nil {
		return fmt.Errorf("ipc: decode %T: %w", v, err)
	}
	return nil
}
