// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"bytes"
	"encoding/gob"
	"reflect"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type nested struct {
	Name  string
	Items []sample
	M     map[string][]int
	P     *sample
}

type withAny struct {
	V any
}

func init() { gob.Register(sample{}) }

// Every gob payload stays a self-contained stream that a fresh decoder
// reads, and the cached decoder reads what a fresh encoder wrote.
func TestCodecGobInterop(t *testing.T) {
	values := []any{
		sample{N: 1, S: "a", F: 2.5, List: []int{1}},
		nested{Name: "n", Items: []sample{{N: 2}}, M: map[string][]int{"k": {3}}, P: &sample{S: "p"}},
		withAny{V: sample{N: 9}},
		42,
		"text",
		[]string{"x", "y"},
	}
	for range 3 { // first use, then cached
		for _, v := range values {
			b, err := DefaultCodec.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			// A fresh decoder reads it.
			fresh := newOf(v)
			if err := gob.NewDecoder(bytes.NewReader(b)).Decode(fresh.Interface()); err != nil {
				t.Fatalf("%T: fresh decoder: %v", v, err)
			}
			if d := cmp.Diff(v, fresh.Elem().Interface()); d != "" {
				t.Fatalf("%T fresh (-want +got):\n%s", v, d)
			}
			// The codec reads what a fresh encoder wrote.
			var buf bytes.Buffer
			gob.NewEncoder(&buf).Encode(v)
			got := newOf(v)
			if err := DefaultCodec.Unmarshal(buf.Bytes(), got.Interface()); err != nil {
				t.Fatalf("%T: codec decoder: %v", v, err)
			}
			if d := cmp.Diff(v, got.Elem().Interface()); d != "" {
				t.Fatalf("%T codec (-want +got):\n%s", v, d)
			}
		}
	}
	// A payload of another type is an error, and the cache recovers.
	b, _ := DefaultCodec.Marshal(sample{N: 1})
	var n nested
	if err := DefaultCodec.Unmarshal(b, &n); err == nil {
		t.Error("sample decoded into nested")
	}
	b, _ = DefaultCodec.Marshal(nested{Name: "ok"})
	if err := DefaultCodec.Unmarshal(b, &n); err != nil || n.Name != "ok" {
		t.Errorf("after a failure: %+v %v", n, err)
	}
}

func TestCodecKinds(t *testing.T) {
	type named []byte
	nb, _ := DefaultCodec.Marshal(named("nm"))
	var nv named
	if string(nb) != "nm" || DefaultCodec.Unmarshal(nb, &nv) != nil || string(nv) != "nm" {
		t.Fatalf("a named slice of bytes travels as it is: %q -> %q", nb, nv)
	}
	b, _ := DefaultCodec.Marshal(wrapperspb.String("proto"))
	var m wrapperspb.StringValue
	if err := DefaultCodec.Unmarshal(b, &m); err != nil || m.Value != "proto" {
		t.Fatal(err)
	}
	raw, _ := DefaultCodec.Marshal([]byte("raw"))
	var r []byte
	if DefaultCodec.Unmarshal(raw, &r); string(r) != "raw" {
		t.Fatal("raw")
	}
}

func TestCodecConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				v := sample{N: g*1000 + i, S: "s", List: make([]int, i%5)}
				b, err := DefaultCodec.Marshal(v)
				if err != nil {
					t.Error(err)
					return
				}
				var got sample
				if err := DefaultCodec.Unmarshal(b, &got); err != nil || got.N != v.N || len(got.List) != len(v.List) {
					t.Errorf("%+v %v", got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// FuzzGobUnmarshal: the cached decoder agrees with a fresh gob decoder
// on arbitrary input (after a valid prefix) and never panics.
func FuzzGobUnmarshal(f *testing.F) {
	good, _ := DefaultCodec.Marshal(sample{N: 7, S: "x", List: []int{1, 2}})
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, append(bytes.Clone(good[:len(good)-20]), data...)} {
			var a, b sample
			errA := DefaultCodec.Unmarshal(in, &a)
			errB := gob.NewDecoder(bytes.NewReader(in)).Decode(&b)
			if (errA == nil) != (errB == nil) {
				t.Fatalf("cached: %v, fresh: %v", errA, errB)
			}
			if errA == nil {
				if d := cmp.Diff(b, a); d != "" {
					t.Fatalf("(-fresh +cached):\n%s", d)
				}
			}
		}
	})
}

func newOf(v any) reflect.Value { return reflect.New(reflect.TypeOf(v)) }
