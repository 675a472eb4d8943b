// SPDX-License-Identifier: Apache-2.0

//go:build linux

package shm

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/multiproc/multiproc/internal/mptest"
)

type point struct {
	X, Y float64
	N    int16
	_    [6]byte
	Tags [3]uint8
}

type counter int64

type bad struct {
	ID    int
	Inner struct {
		OK   [2]int32
		Name string
	}
}

func TestTypeRejection(t *testing.T) {
	tests := []struct {
		name string
		mk   func() error
		path string
	}{
		{"string", func() error { _, err := NewValue(""); return err }, "string"},
		{"pointer", func() error { _, err := NewValue(new(int)); return err }, "ptr"},
		{"slice", func() error { _, err := NewArray[[]int](2); return err }, "slice"},
		{"map", func() error { _, err := NewValue(map[int]int{}); return err }, "map"},
		{"chan", func() error { _, err := NewArray[chan int](1); return err }, "chan"},
		{"func", func() error { _, err := NewValue(func() {}); return err }, "func"},
		{"interface", func() error { _, err := NewValue[any](1); return err }, "interface"},
		{"nested field", func() error { _, err := NewValue(bad{}); return err }, "bad.Inner.Name is a string"},
		{"array of pointers", func() error { _, err := NewValue([4]*int{}); return err }, "[0] is a ptr"},
		{"open", func() error { _, err := OpenValue[[]byte]("whatever"); return err }, "slice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.mk()
			var te *TypeError
			if !errors.Is(err, ErrUnsupportedType) || !errors.As(err, &te) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("got %v, want a TypeError mentioning %q", err, tt.path)
			}
		})
	}
	if _, err := NewValue(struct{}{}); !errors.Is(err, ErrInvalidSize) {
		t.Errorf("zero-size value: %v", err)
	}
	if _, err := NewArray[int](0); !errors.Is(err, ErrInvalidSize) {
		t.Errorf("empty array: %v", err)
	}
}

func TestValueLocal(t *testing.T) {
	checkLeaks(t)
	v, err := NewValue[counter](5)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if !v.Atomic() || v.Load() != 5 {
		t.Fatalf("atomic %v load %d", v.Atomic(), v.Load())
	}
	if v.Add(-7) != -2 || v.Swap(10) != -2 || !v.CompareAndSwap(10, 11) || v.CompareAndSwap(10, 12) || v.Get() != 11 {
		t.Errorf("atomic ops: %d", v.Get())
	}
	u, err := NewValue[uint32](0)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if u.Add(^uint32(0)) != ^uint32(0) {
		t.Error("uint32 wrap-around")
	}
	p, err := NewValue(point{X: 1, Y: 2, Tags: [3]uint8{1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Atomic() {
		t.Error("struct value reports atomic")
	}
	p.Pointer().N = 7
	if got := p.Load(); got.X != 1 || got.N != 7 || got.Tags[2] != 3 {
		t.Errorf("point %+v", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("Add on a struct Value did not panic")
		}
	}()
	p.Add(point{})
}

// Values set in a child are visible in the parent (_TestValue,
// _TestArray, _TestSharedCTypes), for each kind of backing store.
var _ = mptest.RegisterHelper("shm-values", func() {
	var (
		i  Value[int64]
		f  Value[float64]
		b  Value[bool]
		c  Value[byte]
		p  Value[point]
		ai Array[int32]
		ad Array[float64]
		ac Array[byte]
	)
	childAttach(&i, &f, &b, &c, &p, &ai, &ad, &ac)
	i.Store(i.Load() * 2)
	f.Set(f.Get() * 2)
	b.Set(!b.Get())
	c.Set(c.Get() + 1)
	pt := p.Load()
	pt.X, pt.Y, pt.N = pt.X*2, pt.Y*2, pt.N*2
	p.Store(pt)
	s := ai.Slice() // prefix sums in place, as _TestArray.f does
	for j := 1; j < len(s); j++ {
		s[j] += s[j-1]
	}
	for j := range ad.Len() {
		ad.Set(j, ad.At(j)*2)
	}
	copy(ac.Slice(), "hello")
	for _, cl := range []interface{ Close() error }{&i, &f, &b, &c, &p, &ai, &ad, &ac} {
		if err := cl.Close(); err != nil {
			childFail(err)
		}
	}
})

func TestValuesInChild(t *testing.T) {
	arena, err := NewArena(1 << 16)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	for _, kind := range []string{"anonymous", "named", "arena"} {
		t.Run(kind, func(t *testing.T) {
			checkLeaks(t)
			mptest.CheckChildren(t)
			var objs []handlerCloser
			add := func(h handlerCloser, err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				objs = append(objs, h)
			}
			defer func() {
				for _, o := range objs {
					o.Close()
					if s := o.Segment(); s != nil && s.Name() != "" {
						s.Unlink()
					}
				}
			}()
			switch kind {
			case "anonymous":
				add(wrap(NewValue[int64](21)))
				add(wrap(NewValue(1.25)))
				add(wrap(NewValue(true)))
				add(wrap(NewValue[byte]('x')))
				add(wrap(NewValue(point{X: 1, Y: -2, N: 3})))
				add(wrap(NewArray[int32](10)))
				add(wrap(NewArray[float64](5)))
				add(wrap(NewArray[byte](8)))
			case "named":
				add(wrap(CreateValue(testName(t), int64(21))))
				add(wrap(CreateValue(testName(t), 1.25)))
				add(wrap(CreateValue(testName(t), true)))
				add(wrap(CreateValue(testName(t), byte('x'))))
				add(wrap(CreateValue(testName(t), point{X: 1, Y: -2, N: 3})))
				add(wrap(CreateArray[int32](testName(t), 10)))
				add(wrap(CreateArray[float64](testName(t), 5)))
				add(wrap(CreateArray[byte](testName(t), 8)))
			case "arena":
				add(wrap(AllocValue(arena, int64(21))))
				add(wrap(AllocValue(arena, 1.25)))
				add(wrap(AllocValue(arena, true)))
				add(wrap(AllocValue(arena, byte('x'))))
				add(wrap(AllocValue(arena, point{X: 1, Y: -2, N: 3})))
				add(wrap(AllocArray[int32](arena, 10)))
				add(wrap(AllocArray[float64](arena, 5)))
				add(wrap(AllocArray[byte](arena, 8)))
			}
			ai := objs[5].(*Array[int32])
			for j := range ai.Len() {
				ai.Set(j, int32(j))
			}
			ad := objs[6].(*Array[float64])
			copy(ad.Slice(), []float64{1, 2, 3, 4, 5})
			hs := make([]handler, len(objs))
			for j, o := range objs {
				hs[j] = o
			}
			runChild(t, "shm-values", hs...)
			got := []any{
				objs[0].(*Value[int64]).Load(), objs[1].(*Value[float64]).Get(), objs[2].(*Value[bool]).Get(),
				objs[3].(*Value[byte]).Get(), objs[4].(*Value[point]).Get(),
				ai.Slice(), ad.Slice(), string(objs[7].(*Array[byte]).Slice()),
			}
			want := []any{
				int64(42), 2.5, false, byte('y'), point{X: 2, Y: -4, N: 6},
				[]int32{0, 1, 3, 6, 10, 15, 21, 28, 36, 45}, []float64{2, 4, 6, 8, 10}, "hello\x00\x00\x00",
			}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(point{})); diff != "" {
				t.Errorf("after the child (-want +got):\n%s", diff)
			}
		})
	}
}

type handlerCloser interface {
	handler
	Close() error
	Segment() *Segment
}

func wrap[T handlerCloser](v T, err error) (handlerCloser, error) { return v, err }

// Atomic adds from a child and from the parent's goroutines at the same
// time lose nothing.
var _ = mptest.RegisterHelper("shm-add", func() {
	var v Value[uint64]
	childAttach(&v)
	for range 20000 {
		v.Add(1)
	}
	v.Close()
})

func TestAtomicAcrossProcesses(t *testing.T) {
	checkLeaks(t)
	mptest.CheckChildren(t)
	v, err := NewValue[uint64](0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	cmd := childCmd(t, "shm-add", v)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for range 20000 {
				v.Add(1)
			}
		})
	}
	wg.Wait()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := v.Load(); got != 60000 {
		t.Errorf("count %d, want 60000", got)
	}
}

func TestNamedValueOpen(t *testing.T) {
	checkLeaks(t)
	name := testName(t)
	v, err := CreateValue(name, point{X: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Segment().Unlink()
	defer v.Close()
	o, err := OpenValue[point](name)
	if err != nil {
		t.Fatal(err)
	}
	o.Pointer().Y = 9
	o.Close()
	if got := v.Load(); got.X != 3 || got.Y != 9 {
		t.Errorf("%+v", got)
	}
	if _, err := OpenValue[[1024]byte](name); !errors.Is(err, ErrInvalidSize) {
		t.Errorf("OpenValue of a larger type: %v", err)
	}
	a, err := OpenArray[int32](name)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if want := v.Segment().Size() / 4; a.Len() != want {
		t.Errorf("OpenArray len %d, want %d", a.Len(), want)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.MultiprocHandle(); !errors.Is(err, ErrClosed) {
		t.Errorf("handle of a closed value: %v", err)
	}
}

// A handle rebuilt as the wrong type is refused, and its files closed.
func TestValueHandleMismatch(t *testing.T) {
	checkLeaks(t)
	v, err := NewValue[int64](1)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	files, desc, err := v.MultiprocHandle()
	if err != nil {
		t.Fatal(err)
	}
	var w Value[int32]
	if err := w.MultiprocAttach(files, desc); !errors.Is(err, ErrBadHandle) {
		t.Errorf("attach as int32: %v", err)
	}
	a, err := NewArray[uint16](3)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	files, desc, err = a.MultiprocHandle()
	if err != nil {
		t.Fatal(err)
	}
	var vv Value[uint16] // an Array of 3 is not a Value
	if err := vv.MultiprocAttach(files, desc); !errors.Is(err, ErrBadHandle) {
		t.Errorf("attach array as value: %v", err)
	}
	files, desc, _ = a.MultiprocHandle()
	var b Array[uint16]
	if err := b.MultiprocAttach(files, desc); err != nil || b.Len() != 3 {
		t.Fatalf("attach array: %v, len %d", err, b.Len())
	}
	b.Set(2, 7)
	b.Close()
	if a.At(2) != 7 {
		t.Error("write through the attached array not visible")
	}
	var s Value[string]
	files, desc, _ = v.MultiprocHandle()
	if err := s.MultiprocAttach(files, desc); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("attach as string: %v", err)
	}
}
