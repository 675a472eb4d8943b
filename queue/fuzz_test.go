// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"bytes"
	"encoding/binary"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

// FuzzDecode feeds frames to the decoders of several types, starting
// from frames that producers really write (encode's output for values of
// each type). For any frame, a decoder returns a value or an error and
// never panics; a value it returns encodes to a frame that decodes to
// the same value again. Values made from the fuzzer's bytes round-trip
// exactly.
func FuzzDecode(f *testing.F) {
	add := func(e encoded, err error) {
		if err != nil {
			f.Fatal(err)
		}
		f.Add(e.tag, frameBytes(e))
	}
	add(encodeAs(42))
	add(encodeAs(int8(-7)))
	add(encodeAs(uint32(1 << 31)))
	add(encodeAs(float32(1.5)))
	add(encodeAs(math.Inf(-1)))
	add(encodeAs(complex64(complex(1, -2))))
	add(encodeAs(true))
	add(encodeAs("hi"))
	add(encodeAs([]byte("raw")))
	add(encodeAs(point{X: 1, Y: -2, Name: "p"}))
	add(encodeAs(color(3)))
	add(encodeAs[any](point{X: 5}))
	add(encodeAs(wrapperspb.String("proto")))
	f.Add(uint8(0), []byte(nil))
	f.Add(uint8(200), []byte{1})
	f.Fuzz(func(t *testing.T, tag uint8, data []byte) {
		checkDecode[int](t, tag, data)
		checkDecode[int8](t, tag, data)
		checkDecode[uint32](t, tag, data)
		checkDecode[float32](t, tag, data)
		checkDecode[complex64](t, tag, data)
		checkDecode[bool](t, tag, data)
		checkDecode[string](t, tag, data)
		checkDecode[[]byte](t, tag, data)
		checkDecode[point](t, tag, data)
		checkDecode[color](t, tag, data)
		checkDecode[any](t, tag, data)
		checkDecode[*wrapperspb.StringValue](t, tag, data)

		// Values built from the input round-trip exactly (floats by
		// their bits; a float32 NaN stays a NaN).
		var w [16]byte
		copy(w[:], data)
		x := binary.LittleEndian.Uint64(w[:])
		y := binary.LittleEndian.Uint64(w[8:])
		checkRoundTrip(t, int64(x))
		checkRoundTrip(t, int8(x))
		checkRoundTrip(t, uint32(x))
		checkRoundTrip(t, math.Float64frombits(x))
		checkRoundTrip(t, math.Float32frombits(uint32(x)))
		checkRoundTrip(t, complex(math.Float64frombits(x), math.Float64frombits(y)))
		checkRoundTrip(t, x&1 == 1)
		checkRoundTrip(t, string(data))
		checkRoundTrip(t, bytes.Clone(data))
		checkRoundTrip(t, point{X: int(x), Y: int(y), Name: strings.ToValidUTF8(string(data), "")})
	})
}

// encodeAs encodes v as a producer of T does.
func encodeAs[T any](v T) (encoded, error) {
	ti := infoOf[T]()
	return encode(&ti, v)
}

// frameBytes returns the bytes of e as the ring holds them (core.go's
// write): the payload, or the scalar's bits, little-endian.
func frameBytes(e encoded) []byte {
	if e.payload != nil {
		return bytes.Clone(e.payload)
	}
	b := make([]byte, e.n)
	switch e.n {
	case 1:
		b[0] = byte(e.bits[0])
	case 8:
		binary.LittleEndian.PutUint64(b, e.bits[0])
	case 16:
		binary.LittleEndian.PutUint64(b, e.bits[0])
		binary.LittleEndian.PutUint64(b[8:], e.bits[1])
	}
	return b
}

// checkDecode decodes the frame as a T; a value it gives must encode to
// a frame that decodes and re-encodes to the same bytes.
func checkDecode[T any](t *testing.T, tag uint8, data []byte) {
	t.Helper()
	ti := infoOf[T]()
	v, err := decode[T](&ti, tag, data)
	if err != nil {
		return
	}
	e, err := encode(&ti, v)
	if err != nil {
		if _, isAny := any(&v).(*any); isAny {
			return // an interface holding what gob cannot encode again
		}
		t.Fatalf("%T: decoded %v from tag %d, which does not encode: %v", v, v, tag, err)
	}
	b := frameBytes(e)
	v2, err := decode[T](&ti, e.tag, b)
	if err != nil {
		t.Fatalf("%T: %v re-encoded (tag %d, %x) does not decode: %v", v, v, e.tag, b, err)
	}
	e2, err := encode(&ti, v2)
	if err != nil || e2.tag != e.tag || !bytes.Equal(frameBytes(e2), b) {
		t.Fatalf("%T: %v and its round trip %v encode differently (%v)", v, v, v2, err)
	}
}

// checkRoundTrip encodes v and decodes it back as its own type.
func checkRoundTrip[T any](t *testing.T, v T) {
	t.Helper()
	ti := infoOf[T]()
	e, err := encode(&ti, v)
	if err != nil {
		t.Fatalf("%T: encode %v: %v", v, v, err)
	}
	got, err := decode[T](&ti, e.tag, frameBytes(e))
	if err != nil {
		t.Fatalf("%T: decode %v: %v", v, v, err)
	}
	if !sameValue(v, got) {
		t.Fatalf("%T: %v came back as %v", v, v, got)
	}
}

// sameValue is reflect.DeepEqual with floats compared by their bits.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case float64:
		return math.Float64bits(x) == math.Float64bits(b.(float64))
	case float32:
		// Stored as a float64, as gob does: a signalling NaN comes back
		// quiet, still a NaN.
		y := b.(float32)
		return math.Float32bits(x) == math.Float32bits(y) || x != x && y != y
	case complex128:
		y := b.(complex128)
		return sameValue(real(x), real(y)) && sameValue(imag(x), imag(y))
	case []byte:
		return bytes.Equal(x, b.([]byte))
	}
	return reflect.DeepEqual(a, b)
}

// FuzzAttach feeds arbitrary descriptors, and arbitrary queue headers and
// ring contents in a real segment, to attach and to TryGet/TryPut. The
// seeds include the memory of real queues holding items, some wrapped
// around the ring's end. Whatever the memory holds: errors, never panics
// or out-of-range accesses, and every frame TryGet returns is within the
// header's bounds; a real queue's memory, unchanged, gives back its items
// in order.
func FuzzAttach(f *testing.F) {
	f.Add([]byte{'Q', 1}, []byte{}, []byte{})
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
	f.Add([]byte{'Q', 1, 0}, good, []byte{})
	for _, s := range realSnapshots(f) {
		f.Add([]byte{'Q', 1, 0}, s.hdr, s.data)
	}
	f.Fuzz(func(t *testing.T, desc, hdr, data []byte) {
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
		copy(q.data, data)
		if err := q.load(kindQueue); err != nil {
			return
		}
		var got []string
		for range 64 {
			fr, err := q.get(t.Context(), false, nil)
			if err != nil {
				break
			}
			if int64(fr.n) > q.maxItem || fr.tag == 0 || fr.tag > maxTag {
				t.Fatalf("TryGet returned a frame of %d bytes, tag %d (max item %d)", fr.n, fr.tag, q.maxItem)
			}
			b := fr.big
			if b == nil {
				b = fr.small[:fr.n]
			}
			got = append(got, string(b))
		}
		if want, ok := snapshotItems[snapshotKey(hdr, data)]; ok && !slices.Equal(got, want) {
			t.Fatalf("a real queue's memory gave back %q, want %q", got, want)
		}
		q.put(t.Context(), encoded{tag: tagRaw, payload: []byte("x")}, false)
		q.get(t.Context(), false, nil)
	})
}

type snapshot struct {
	hdr, data []byte
	items     []string
}

// snapshotItems maps the memory of each real queue of realSnapshots to
// the items it holds.
var snapshotItems = map[string][]string{}

func snapshotKey(hdr, data []byte) string { return string(hdr) + "\x00" + string(data) }

// realSnapshots returns the memory (header without the locks' words, and
// ring) of real queues holding items: a few small ones, and one whose
// items wrap around the ring's end.
func realSnapshots(f *testing.F) []snapshot {
	var out []snapshot
	for _, tc := range []struct {
		puts, keep int // the last keep items stay queued
		size       int
	}{{3, 2, 5}, {1, 1, 100}, {120, 5, 90}} { // 120 items of up to 90 bytes wrap the 4 KiB ring
		q, err := newCore(kindQueue, newOptions([]Option{MaxBytes(4096)}))
		if err != nil {
			f.Fatal(err)
		}
		var items []string
		for i := range tc.puts {
			item := strings.Repeat(string(rune('a'+i%26)), 1+(i*7)%tc.size)
			if err := q.put(f.Context(), encoded{tag: tagRaw, payload: []byte(item)}, false); err != nil {
				f.Fatal(err)
			}
			items = append(items, item)
			if len(items) > tc.keep {
				if _, err := q.get(f.Context(), false, nil); err != nil {
					f.Fatal(err)
				}
				items = items[1:]
			}
		}
		m := q.seg.Bytes()
		s := snapshot{hdr: bytes.Clone(m[:hdrSize]), data: bytes.Clone(q.data), items: items}
		q.close()
		// The fuzz function keeps its own locks' words: zero them here so
		// that the seed is what it writes.
		clear(s.hdr[offLockP : offLockC+64])
		snapshotItems[snapshotKey(s.hdr, s.data)] = s.items
		out = append(out, s)
	}
	return out
}
