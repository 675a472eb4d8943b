// SPDX-License-Identifier: Apache-2.0

package valenc

import (
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type point struct {
	X, Y float64
	N    [3]int16
}

type named struct {
	Name string
	Tags []string
}

func roundTrip[T any](t *testing.T, in []T) {
	t.Helper()
	c := RunOf[T]()
	b, err := c.Append(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Decode(b, len(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(in) == 0 {
		if len(out) != 0 {
			t.Errorf("decoded %v from nothing", out)
		}
		return
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("%T round trip (-in +out):\n%s", c, diff)
	}
	shared, err := c.DecodeShared(b, len(in))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, shared); diff != "" {
		t.Errorf("%T DecodeShared (-in +out):\n%s", c, diff)
	}
	if n, ok := c.Size(in); ok {
		if n != len(b) {
			t.Errorf("%T Size %d, encoding of %d bytes", c, n, len(b))
		}
		// Encoding into exactly Size bytes of room writes in place.
		room := make([]byte, 0, n)
		if enc, err := c.Append(room, in); err != nil || (n > 0 && &enc[0] != &room[:1][0]) || len(enc) != n {
			t.Errorf("%T Append into Size's room: %d bytes, in place %v, %v", c, len(enc), n > 0 && &enc[0] == &room[:1][0], err)
		}
	}
}

// DecodeShared lends byte slices that alias the payload, capped at their
// length; Decode copies them; Size is known for bytes, strings and plain
// data only.
func TestDecodeShared(t *testing.T) {
	r := RunOf[[]byte]()
	in := [][]byte{{1, 2, 3}, {}, {4}}
	b, _ := r.Append(nil, in)
	got, err := r.DecodeShared(b, len(in))
	if err != nil {
		t.Fatal(err)
	}
	if &got[0][0] != &b[1] || cap(got[0]) != 3 || got[1] == nil || len(got[1]) != 0 {
		t.Errorf("DecodeShared does not alias the payload: %v (cap %d)", got, cap(got[0]))
	}
	copied, _ := r.Decode(b, len(in))
	if &copied[0][0] == &b[1] {
		t.Errorf("Decode aliases the payload")
	}
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"bytes", func() bool { _, ok := RunOf[[]byte]().Size(nil); return ok }()},
		{"string", func() bool { _, ok := RunOf[string]().Size(nil); return ok }()},
		{"plain", func() bool { _, ok := RunOf[point]().Size(nil); return ok }()},
		{"gob", func() bool { _, ok := RunOf[named]().Size(nil); return !ok }()},
		{"proto", func() bool { _, ok := RunOf[*wrapperspb.StringValue]().Size(nil); return !ok }()},
	} {
		if !tc.ok {
			t.Errorf("Size of %s: wrong answer to whether it is known", tc.name)
		}
	}
	// A length whose uvarint takes several bytes.
	big := [][]byte{make([]byte, 300), make([]byte, 1<<17)}
	if n, _ := r.Size(big); n != 2+300+3+1<<17 {
		t.Errorf("Size of 300 and 128 KiB: %d", n)
	}
}

func TestCodecs(t *testing.T) {
	roundTrip(t, []int{1, -2, 1 << 30})
	roundTrip(t, []int64{1, -2, 1 << 40})
	roundTrip(t, []int{})
	roundTrip(t, []float32{1.5, -0})
	roundTrip(t, []bool{true, false})
	roundTrip(t, []point{{1, 2, [3]int16{3, 4, 5}}, {}})
	roundTrip(t, []string{"", "héllo", "x"})
	roundTrip(t, [][]byte{{}, {1, 2, 3}})
	roundTrip(t, []named{{"a", []string{"b"}}, {}})
	roundTrip(t, []struct{}{{}, {}})
	if _, ok := RunOf[point]().(PlainRun[point]); !ok {
		t.Errorf("point should travel as its memory image")
	}
	if _, ok := RunOf[named]().(gobRun[named]); !ok {
		t.Errorf("named should travel with gob")
	}
	type handle struct{ P uintptr }
	roundTrip(t, []handle{{1}, {1 << 31}}) // 1<<31 fits a 32-bit uintptr
}

// Proto messages travel in wire format, not through gob.
func TestProtoRun(t *testing.T) {
	r := RunOf[*wrapperspb.StringValue]()
	if _, ok := r.(protoRun[*wrapperspb.StringValue]); !ok {
		t.Fatalf("a proto message's run is %T", r)
	}
	in := []*wrapperspb.StringValue{wrapperspb.String("a"), wrapperspb.String(""), nil}
	b, err := r.Append(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Decode(b, len(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []*wrapperspb.StringValue{wrapperspb.String("a"), {}, {}}
	if diff := cmp.Diff(want, out, protocmp.Transform()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := r.Decode(b[:len(b)-1], len(in)); err == nil {
		t.Error("a cut payload decoded")
	}
}

func TestClassOf(t *testing.T) {
	type inner struct{ Names []string }
	type outer struct {
		A  int
		In inner
	}
	tests := []struct {
		v    any
		want Class
	}{
		{[]byte{}, Bytes}, {"s", String}, {1, Plain}, {uintptr(1), Plain}, {[2]float64{}, Plain},
		{wrapperspb.String("x"), Proto}, {outer{}, Gob}, {map[string]int{}, Gob}, {struct{}{}, Gob},
	}
	for _, tt := range tests {
		if got := ClassOf(reflect.TypeOf(tt.v)); got != tt.want {
			t.Errorf("ClassOf(%T) = %v, want %v", tt.v, got, tt.want)
		}
	}
	path, kind, ok := PlainCheck(reflect.TypeFor[outer]())
	if ok || path != "outer.In.Names" || kind != reflect.Slice {
		t.Errorf("PlainCheck(outer) = %q, %v, %v", path, kind, ok)
	}
}

// FuzzDecode feeds arbitrary payloads to every decoder: errors, never
// panics, and never more values than asked for.
func FuzzDecode(f *testing.F) {
	b, _ := RunOf[string]().Append(nil, []string{"ab", ""})
	f.Add(b, 2)
	b, _ = RunOf[named]().Append(nil, []named{{"a", nil}})
	f.Add(b, 1)
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n > 1<<16 {
			n = 1 << 16
		}
		check := func(l int, err error) {
			if err == nil && l != n {
				t.Fatalf("decoded %d values, asked for %d", l, n)
			}
		}
		v1, err := RunOf[int]().Decode(b, n)
		check(len(v1), err)
		v2, err := RunOf[string]().Decode(b, n)
		check(len(v2), err)
		v3, err := RunOf[[]byte]().Decode(b, n)
		check(len(v3), err)
		v4, err := RunOf[named]().Decode(b, n)
		check(len(v4), err)
		v5, err := RunOf[point]().Decode(b, n)
		check(len(v5), err)
		v6, err := RunOf[*wrapperspb.StringValue]().Decode(b, n)
		check(len(v6), err)
	})
}

func TestDecodeInto(t *testing.T) {
	pc := RunOf[point]()
	in := []point{{X: 1, N: [3]int16{1, 2, 3}}, {Y: -2}}
	b, _ := pc.Append(nil, in)
	dst := make([]point, 2)
	if err := DecodeInto(pc, b, dst); err != nil || !cmp.Equal(dst, in) {
		t.Fatalf("decodeInto = %v, %v", dst, err)
	}
	// A length mismatch fails and leaves dst alone.
	keep := []point{{X: 9}, {X: 9}, {X: 9}}
	if err := DecodeInto(pc, b, keep); err == nil || keep[0].X != 9 || keep[2].X != 9 {
		t.Fatalf("decodeInto with a short payload: %v, %v", keep, err)
	}
	sc := RunOf[string]()
	b, _ = sc.Append(nil, []string{"a", "", "héllo"})
	sdst := []string{"x", "y", "z"}
	if err := DecodeInto(sc, b, sdst); err != nil || !cmp.Equal(sdst, []string{"a", "", "héllo"}) {
		t.Fatalf("decodeInto strings = %q, %v", sdst, err)
	}
	if err := DecodeInto(sc, b[:len(b)-1], sdst); err == nil || sdst[2] != "héllo" {
		t.Fatalf("decodeInto bad strings: %q, %v", sdst, err)
	}
}

// Decoding into a pointer to a pointer, and encoding a nil pointer, are
// plain errors or plain successes, never panics.
func TestGobPointers(t *testing.T) {
	type pt struct{ X int }
	b, err := GobMarshal(&pt{X: 3})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time through the cache
		var p *pt
		if err := GobUnmarshal(b, &p); err != nil || p == nil || p.X != 3 {
			t.Fatalf("decode into **pt: %+v, %v", p, err)
		}
	}
	if _, err := GobMarshal((*pt)(nil)); err == nil {
		t.Error("a nil pointer encoded")
	}
}
