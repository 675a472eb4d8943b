// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"

	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

type fuzzLine struct {
	SKU  string
	Qty  uint8
	Tags []string
	Meta map[string]any
}

type fuzzOrder struct {
	fuzzEmbedded
	ID    int64
	When  time.Time
	Lines []fuzzLine
	Ship  *fuzzLine
	ByKey map[int]fuzzLine
	Any   any
	Next  *fuzzOrder
	Grid  [2]float32
	Raw   []byte
	skip  int
}

type fuzzEmbedded struct{ By string }

// FuzzStructValue feeds arbitrary bytes, as a Value from the wire, to the
// decoder of a struct (the path a typed proxy's result and a custom
// method's argument take): it never panics, a Value that passes the
// server's checks and decodes re-encodes, and that encoding decodes to
// the same struct.
func FuzzStructValue(f *testing.F) {
	seeds := []any{
		fuzzOrder{ID: 1, When: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Lines: []fuzzLine{{SKU: "a", Qty: 2, Tags: []string{"x"}}},
			Ship: &fuzzLine{SKU: "s", Meta: map[string]any{"k": 1.5}}, ByKey: map[int]fuzzLine{-1: {SKU: "m"}}, Any: []any{"x", int64(3)},
			Next: &fuzzOrder{ID: 2, skip: 1}, Grid: [2]float32{1.5, -2}, Raw: []byte{1, 2}, fuzzEmbedded: fuzzEmbedded{By: "me"}},
		fuzzOrder{},
		map[string]any{"ID": "not an int"},
		map[string]any{"Lines": []any{map[string]any{"Qty": 300}}},
		map[string]any{"When": "not a time"},
		map[int]any{1: 2},
		[]any{1, 2},
	}
	for _, s := range seeds {
		v, err := toValue(s)
		if err != nil {
			f.Fatal(err)
		}
		b, err := proto.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x42, 0x00})
	opts := cmp.Options{cmpopts.EquateEmpty(), cmpopts.EquateNaNs(), cmpopts.IgnoreUnexported(fuzzOrder{})}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v pb.Value
		if err := unmarshalOpts.Unmarshal(data, &v); err != nil {
			return
		}
		if err := checkValue(&v, 0); err != nil {
			return // the server refuses it before any decoding
		}
		got, err := decodeAs[fuzzOrder](nil, &v)
		if err != nil {
			return
		}
		again, err := toValue(got)
		if err != nil {
			if got.When.Year() < 0 || got.When.Year() > 9999 {
				return // time.Time has no text form for it
			}
			t.Fatalf("a decoded struct does not encode: %v", err)
		}
		back, err := decodeAs[fuzzOrder](nil, again)
		if err != nil {
			t.Fatalf("an encoded struct does not decode: %v", err)
		}
		if diff := cmp.Diff(got, back, opts); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
