// SPDX-License-Identifier: Apache-2.0

package pickle

import "fmt"

// Defaults for the bounds a Codec applies.
const (
	// DefaultMaxSize bounds a pickle's length, on read and on write. It is
	// below ipc.DefaultMaxFrameSize: decoding allocates a few times the
	// input.
	DefaultMaxSize = 64 << 20
	// DefaultMaxDepth bounds the nesting of containers. CPython's own
	// pickler fails near 1000 with its default recursion limit.
	DefaultMaxDepth = 1000
	// DefaultMaxMemo bounds the number of memo entries.
	DefaultMaxMemo = 1 << 20
	// DefaultMaxItems bounds the number of values a pickle makes (each
	// int, str, container and memo reference counts one), and with it the
	// memory decoding takes beyond copies of str and bytes: at most about
	// 150 bytes an item, so about 300 MiB.
	DefaultMaxItems = 2 << 20
	// DefaultProtocol is the protocol Marshal writes: pickle.DEFAULT_PROTOCOL
	// of CPython 3.8 to 3.13.
	DefaultProtocol = 4
)

// A Codec encodes Go values as pickles and decodes pickles into Go values.
// It satisfies ipc.Codec: ipc.UseCodec(pickle.New()) makes a Conn's Send
// and Recv speak to CPython's Connection.send and recv. A Codec is safe for
// concurrent use.
type Codec struct {
	maxSize  int
	maxDepth int
	maxMemo  int
	maxItems int
	protocol int
}

// An Option configures a Codec.
type Option func(*Codec)

// MaxSize bounds the length of a pickle, on read and on write
// (default DefaultMaxSize).
func MaxSize(n int) Option { return func(c *Codec) { c.maxSize = n } }

// MaxDepth bounds the nesting of containers, on read and on write
// (default DefaultMaxDepth).
func MaxDepth(n int) Option { return func(c *Codec) { c.maxDepth = n } }

// MaxMemo bounds the number of memo entries a pickle may create
// (default DefaultMaxMemo).
func MaxMemo(n int) Option { return func(c *Codec) { c.maxMemo = n } }

// MaxItems bounds the number of values a pickle may make: each None,
// bool, number, str, bytes, container and memo reference counts one
// (default DefaultMaxItems).
func MaxItems(n int) Option { return func(c *Codec) { c.maxItems = n } }

// Protocol sets the protocol Marshal writes: 4 (the default, what CPython
// 3.8 to 3.13 write) or 5 (3.14's default; it differs only for bytearray).
// Every CPython from 3.8 reads both.
func Protocol(p int) Option { return func(c *Codec) { c.protocol = p } }

// New returns a Codec with the default bounds changed by opts. It panics
// on a bound below 1 or a protocol other than 4 or 5, which are
// programming errors.
func New(opts ...Option) *Codec {
	c := &Codec{maxSize: DefaultMaxSize, maxDepth: DefaultMaxDepth, maxMemo: DefaultMaxMemo, maxItems: DefaultMaxItems, protocol: DefaultProtocol}
	for _, o := range opts {
		o(c)
	}
	if c.maxSize < 1 || c.maxDepth < 1 || c.maxMemo < 1 || c.maxItems < 1 {
		panic(fmt.Sprintf("pickle: bounds must be positive (size %d, depth %d, memo %d, items %d)", c.maxSize, c.maxDepth, c.maxMemo, c.maxItems))
	}
	if c.protocol != 4 && c.protocol != 5 {
		panic(fmt.Sprintf("pickle: cannot write protocol %d (4 or 5)", c.protocol))
	}
	return c
}

var defaultCodec = New()

// Marshal encodes v with the default Codec.
func Marshal(v any) ([]byte, error) { return defaultCodec.Marshal(v) }

// Unmarshal decodes data into v with the default Codec.
func Unmarshal(data []byte, v any) error { return defaultCodec.Unmarshal(data, v) }

// Marshal encodes v as a pickle (see the package documentation for the
// Python form of each Go type).
func (c *Codec) Marshal(v any) ([]byte, error) {
	e := encoder{c: c}
	return e.marshal(v)
}

// Unmarshal decodes a pickle into v, which must be a non-nil pointer. A
// *any receives the documented Go type of each Python value; any other
// pointer is filled by type (see the package documentation).
func (c *Codec) Unmarshal(data []byte, v any) error {
	val, err := c.Decode(data)
	if err != nil {
		return err
	}
	return assign(v, val, 4*len(data)+4096, c.maxDepth)
}

// Convert stores a value that Decode returned into dst, a non-nil
// pointer, as Unmarshal would. The work of copying is bounded by MaxItems.
func (c *Codec) Convert(v any, dst any) error {
	return assign(dst, v, c.maxItems, c.maxDepth)
}

// Decode decodes a pickle into the documented Go type of its value.
func (c *Codec) Decode(data []byte) (any, error) {
	if len(data) > c.maxSize {
		return nil, &DecodeError{Err: &LimitError{Limit: "size", Max: int64(c.maxSize)}}
	}
	d := decoder{c: c, data: data}
	return d.decode()
}
