// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"testing"

	"github.com/google/go-cmp/cmp"
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
	c := newCodec[T]()
	b, err := c.encode(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.decode(b, len(in))
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
}

func TestCodecs(t *testing.T) {
	roundTrip(t, []int{1, -2, 1 << 40})
	roundTrip(t, []int{})
	roundTrip(t, []float32{1.5, -0})
	roundTrip(t, []bool{true, false})
	roundTrip(t, []point{{1, 2, [3]int16{3, 4, 5}}, {}})
	roundTrip(t, []string{"", "héllo", "x"})
	roundTrip(t, [][]byte{{}, {1, 2, 3}})
	roundTrip(t, []named{{"a", []string{"b"}}, {}})
	roundTrip(t, []struct{}{{}, {}})
	if _, ok := newCodec[point]().(podCodec[point]); !ok {
		t.Errorf("point should travel as its memory image")
	}
	if _, ok := newCodec[named]().(gobCodec[named]); !ok {
		t.Errorf("named should travel with gob")
	}
}

// FuzzDecode feeds arbitrary payloads to every decoder: errors, never
// panics, and never more values than asked for.
func FuzzDecode(f *testing.F) {
	b, _ := newCodec[string]().encode(nil, []string{"ab", ""})
	f.Add(b, 2)
	b, _ = newCodec[named]().encode(nil, []named{{"a", nil}})
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
		v1, err := newCodec[int]().decode(b, n)
		check(len(v1), err)
		v2, err := newCodec[string]().decode(b, n)
		check(len(v2), err)
		v3, err := newCodec[[]byte]().decode(b, n)
		check(len(v3), err)
		v4, err := newCodec[named]().decode(b, n)
		check(len(v4), err)
		v5, err := newCodec[point]().decode(b, n)
		check(len(v5), err)
	})
}

func TestDecodeInto(t *testing.T) {
	pc := newCodec[point]()
	in := []point{{X: 1, N: [3]int16{1, 2, 3}}, {Y: -2}}
	b, _ := pc.encode(nil, in)
	dst := make([]point, 2)
	if err := decodeInto(pc, b, dst); err != nil || !cmp.Equal(dst, in) {
		t.Fatalf("decodeInto = %v, %v", dst, err)
	}
	// A length mismatch fails and leaves dst alone.
	keep := []point{{X: 9}, {X: 9}, {X: 9}}
	if err := decodeInto(pc, b, keep); err == nil || keep[0].X != 9 || keep[2].X != 9 {
		t.Fatalf("decodeInto with a short payload: %v, %v", keep, err)
	}
	sc := newCodec[string]()
	b, _ = sc.encode(nil, []string{"a", "", "héllo"})
	sdst := []string{"x", "y", "z"}
	if err := decodeInto(sc, b, sdst); err != nil || !cmp.Equal(sdst, []string{"a", "", "héllo"}) {
		t.Fatalf("decodeInto strings = %q, %v", sdst, err)
	}
	if err := decodeInto(sc, b[:len(b)-1], sdst); err == nil || sdst[2] != "héllo" {
		t.Fatalf("decodeInto bad strings: %q, %v", sdst, err)
	}
}
