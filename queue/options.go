// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"fmt"
	"math/bits"

	"go.uber.org/zap"
)

// Defaults of the options.
const (
	// DefaultMaxBytes is the default MaxBytes: the encoded items a queue
	// may hold at once, 1 GiB. It is address space, not memory: pages are
	// used as the ring grows and given back when the queue drains.
	DefaultMaxBytes = 1 << 30
	// DefaultMaxItemSize is the default MaxItemSize, 256 MiB (ipc's
	// default frame limit).
	DefaultMaxItemSize = 256 << 20
	// minRing is the initial (and minimum) ring size.
	minRing = 256 << 10
)

// An Option configures New, NewJoinable or NewSimple.
type Option func(*options)

type options struct {
	maxsize  int
	dataSize uint64
	maxItem  int64
	minCap   uint64
	log      *zap.Logger
	err      error
}

func newOptions(opts []Option) *options {
	o := &options{dataSize: DefaultMaxBytes, maxItem: -1, minCap: minRing, log: zap.NewNop()}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

func (o *options) validate() error {
	if o.err != nil {
		return o.err
	}
	if o.maxsize < 0 {
		return fmt.Errorf("queue: MaxSize(%d): negative", o.maxsize)
	}
	if o.minCap > o.dataSize {
		o.minCap = o.dataSize
	}
	if o.maxItem < 0 {
		o.maxItem = min(DefaultMaxItemSize, int64(o.dataSize)-frameHdr)
	}
	if uint64(o.maxItem)+frameHdr > o.dataSize {
		return fmt.Errorf("queue: MaxItemSize(%d) does not fit in MaxBytes(%d) with its %d-byte header", o.maxItem, o.dataSize, frameHdr)
	}
	return nil
}

// MaxSize bounds the number of items in the queue: Put waits (TryPut
// fails with ErrFull) while the queue holds n items. 0, the default,
// means no bound on the count (Python's maxsize <= 0); the bytes stay
// bounded by MaxBytes. SimpleQueue ignores it.
func MaxSize(n int) Option { return func(o *options) { o.maxsize = n } }

// MaxBytes sets how many bytes of encoded items (plus 8 bytes of header
// per item, rounded up to 8) the queue can hold at once, rounded up to a
// power of two; the default is DefaultMaxBytes. It is reserved as address
// space in every process that holds the queue, and used as memory only
// as far as the queue fills. Put waits (TryPut fails with ErrFull) while
// an item does not fit.
func MaxBytes(n int64) Option {
	return func(o *options) {
		if n < 4096 || n > 1<<40 {
			o.err = fmt.Errorf("queue: MaxBytes(%d): want 4 KiB to 1 TiB", n)
			return
		}
		o.dataSize = 1 << (64 - bits.LeadingZeros64(uint64(n-1)))
	}
}

// MaxItemSize sets the largest encoded item Put accepts (others fail with
// *ItemTooLargeError); the default is DefaultMaxItemSize, or what fits in
// MaxBytes if that is smaller.
func MaxItemSize(n int64) Option {
	return func(o *options) {
		if n < 0 {
			o.err = fmt.Errorf("queue: MaxItemSize(%d): negative", n)
			return
		}
		o.maxItem = n
	}
}

// Logger sets the logger that reports repairs after a process died
// inside a Put or Get (zap.NewNop by default).
func Logger(l *zap.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}
