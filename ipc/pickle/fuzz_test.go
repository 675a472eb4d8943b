// SPDX-License-Identifier: Apache-2.0

package pickle_test

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"github.com/multiproc/multiproc/ipc/pickle"
)

// fuzzCodec has small bounds, so the fuzzer reaches them.
var fuzzCodec = pickle.New(pickle.MaxSize(1<<20), pickle.MaxDepth(64), pickle.MaxMemo(4096))

func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// allocBound is what decoding n bytes may allocate: the stack and
// containers hold one interface (16 bytes) per item, an item costs at
// least one input byte, dict and set keys keep an index entry, and slices
// grow by doubling.
func allocBound(n int) uint64 { return uint64(160*n + 256<<10) }

type job struct {
	Job  int
	Args []any
	Name string `pickle:"name"`
}

// FuzzDecode feeds arbitrary bytes to the decoder, starting from real
// CPython 3.11-3.13 output (testdata/fuzz/FuzzDecode, written by
// testdata/gen_seeds.py). It never panics, never allocates past a bound
// linear in the input, and what it decodes re-encodes to a pickle that
// decodes to an equal value and re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("\x80\x04N."))
	f.Add([]byte("\x80\x02cos\nsystem\n(X\x02\x00\x00\x00idtR."))
	f.Add([]byte("\x80\x04\x8c\x05posix\x8c\x06system\x93."))
	f.Add([]byte("\x80\x04]\x94(h\x00h\x00e."))
	f.Fuzz(func(t *testing.T, data []byte) {
		before := totalAlloc()
		v, err := fuzzCodec.Decode(data)
		if grew := totalAlloc() - before; grew > allocBound(len(data)) {
			t.Fatalf("decoding %d bytes allocated %d", len(data), grew)
		}
		var typed job
		var m map[any]any
		var l []any
		before = totalAlloc()
		fuzzCodec.Unmarshal(data, &typed)
		fuzzCodec.Unmarshal(data, &m)
		fuzzCodec.Unmarshal(data, &l)
		if grew := totalAlloc() - before; grew > 3*allocBound(len(data))+uint64(64*len(data)) {
			t.Fatalf("typed decoding of %d bytes allocated %d", len(data), grew)
		}
		if err != nil {
			var de *pickle.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is not a *DecodeError: %v", err)
			}
			return
		}
		enc, err := fuzzCodec.Marshal(v)
		if err != nil {
			if errors.Is(err, pickle.ErrLimit) {
				return // a recursive structure, or shared objects expanded past MaxSize
			}
			t.Fatalf("decoded %s but cannot encode it: %v", pickle.Repr(v), err)
		}
		v2, err := fuzzCodec.Decode(enc)
		if err != nil {
			t.Fatalf("our own encoding of %s does not decode: %v\n%q", pickle.Repr(v), err, enc)
		}
		enc2, err := fuzzCodec.Marshal(v2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding differs (%v):\n%q\n%q", err, enc, enc2)
		}
	})
}
