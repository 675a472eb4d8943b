// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"encoding/binary"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

// FuzzDecode feeds arbitrary frames to the decoders of several types:
// they return a value or an error, and never panic.
func FuzzDecode(f *testing.F) {
	for _, seed := range []struct {
		tag  uint8
		data []byte
	}{
		{tagInt, make([]byte, 8)}, {tagUint, []byte{1, 2, 3, 4, 5, 6, 7, 8}}, {tagFloat, make([]byte, 8)},
		{tagComplex, make([]byte, 16)}, {tagBool, []byte{1}}, {tagString, []byte("hi")},
		{tagRaw, []byte("raw")}, {tagGob, []byte{3, 4, 0, 2}}, {tagProto, []byte{10, 1, 'x'}}, {0, nil}, {200, []byte{1}},
	} {
		f.Add(seed.tag, seed.data)
	}
	f.Fuzz(func(t *testing.T, tag uint8, data []byte) {
		fuzzOne[int](tag, data)
		fuzzOne[int8](tag, data)
		fuzzOne[uint32](tag, data)
		fuzzOne[float32](tag, data)
		fuzzOne[complex64](tag, data)
		fuzzOne[bool](tag, data)
		fuzzOne[string](tag, data)
		fuzzOne[[]byte](tag, data)
		fuzzOne[point](tag, data)
		fuzzOne[any](tag, data)
		fuzzOne[*wrapperspb.StringValue](tag, data)
	})
}

func fuzzOne[T any](tag uint8, data []byte) {
	ti := infoOf[T]()
	decode[T](&ti, tag, data)
}

// FuzzAttach feeds arbitrary descriptors, and arbitrary queue headers and
// counters in a real segment, to attach and to TryGet/TryPut: errors,
// never panics or out-of-range accesses.
func FuzzAttach(f *testing.F) {
	f.Add([]byte{'Q', 1}, []byte{})
	good := make([]byte, 1024)
	binary.LittleEndian.PutUint32(good[offMagic:], magicWord)
	binary.LittleEndian.PutUint32(good[offVersion:], layoutVer)
	binary.LittleEndian.PutUint32(good[offKind:], uint32(kindQueue))
	binary.LittleEndian.PutUint64(good[offDataSize:], 4096)
	binary.LittleEndian.PutUint64(good[offMaxItem:], 100)
	binary.LittleEndian.PutUint64(good[offMinCap:], 4096)
	binary.LittleEndian.PutUint64(good[offCapacity:], 4096)
	binary.LittleEndian.PutUint64(good[offPutSeq:], 1)
	binary.LittleEndian.PutUint64(good[offTail:], 24)
	f.Add([]byte{'Q', 1, 0}, good)
	f.Fuzz(func(t *testing.T, desc, hdr []byte) {
		if _, err := attachCore(nil, desc, kindQueue); err == nil {
			t.Fatal("attached without files")
		}
		q, err := newCore(kindQueue, newOptions([]Option{MaxBytes(4096)}))
		if err != nil {
			t.Fatal(err)
		}
		defer q.close()
		m := q.seg.Bytes()
		// Keep the locks' words, overwrite the rest of the header.
		for i := 0; i < len(hdr) && i < hdrSize; i++ {
			if i < offLockP || i >= offLockC+64 {
				m[i] = hdr[i]
			}
		}
		copy(q.data, hdr)
		if err := q.load(kindQueue); err != nil {
			return
		}
		q.get(t.Context(), false)
		q.put(t.Context(), encoded{tag: tagRaw, payload: []byte("x")}, false)
		q.get(t.Context(), false)
	})
}
