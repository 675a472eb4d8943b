// SPDX-License-Identifier: Apache-2.0

//go:build linux

package shm

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/multiproc/multiproc/internal/mptest"
)

// refItems is CPython's reference list from _TestSharedMemory.
var refItems = []any{"howdy", []byte("HoWdY"), -273.154, 100, nil, true, 42}

const refFormat = "8s8sdqxxxxxx?xxxxxxxx?q"

// pyPrelude attaches without letting CPython's resource tracker take
// ownership of the segment (3.13: track=False; before: unregister).
const pyPrelude = `
import sys, struct
from multiprocessing import shared_memory, resource_tracker
def attach(name):
    try:
        return shared_memory.SharedMemory(name=name, track=False)
    except TypeError:
        shm = shared_memory.SharedMemory(name=name)
        resource_tracker.unregister(shm._name, "shared_memory")
        return shm
def attach_list(name):
    shm = attach(name)
    sl = shared_memory.ShareableList.__new__(shared_memory.ShareableList)
    sl.shm = shm
    sl._list_len = len(sl)
    sl._allocated_offsets = list(struct.unpack_from(sl._format_size_metainfo, shm.buf, 8))
    return sl
def untrack(shm):
    try:
        resource_tracker.unregister(shm._name, "shared_memory")
    except Exception:
        pass
`

// runPython runs script (after pyPrelude) with args and returns its
// stdout.
func runPython(t *testing.T, py, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command(py, append([]string{"-c", pyPrelude + script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	return string(out)
}

// pythons lists the CPython versions to test against: 3.11 and later from
// pyenv, or just mptest.Python's when there is no pyenv (or MPTEST_PYTHON
// is set).
func pythons(t *testing.T) []string {
	py := mptest.Python(t)
	if os.Getenv("MPTEST_PYTHON") != "" {
		return []string{py}
	}
	mptest.RequirePythonVersions(t)
	var vs []string
	for _, v := range mptest.PythonVersions() {
		var minor int
		if _, err := fmt.Sscanf(v, "3.%d.", &minor); err == nil && minor >= 11 {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return []string{py}
	}
	return vs
}

func pyCmd(t *testing.T, version string) string {
	if !strings.HasPrefix(version, "3.") {
		return version
	}
	t.Setenv("PYENV_VERSION", version)
	return mptest.Python(t)
}

func TestShareableListReference(t *testing.T) {
	checkLeaks(t)
	l, err := NewShareableList("", refItems)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlink()
	defer l.Close()
	if got := l.Format(); got != refFormat {
		t.Errorf("Format() = %q, want %q", got, refFormat)
	}
	b := l.Segment().Bytes()
	if len(b) != 191 {
		t.Fatalf("size %d, want 191", len(b))
	}
	if !bytes.Equal(b[184:191], []byte{1, 2, 0, 0, 3, 0, 0}) || !bytes.Equal(b[112:120], []byte{0, 0, 0, 0, 0, 0, 0, 1}) {
		t.Errorf("codes % x, True slot % x", b[184:191], b[112:120])
	}
	got, err := l.Items()
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"howdy", []byte("HoWdY"), -273.154, int64(100), nil, true, int64(42)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("items (-want +got):\n%s", diff)
	}

	// python3 makes the same list: the bytes must be identical.
	for _, v := range pythons(t) {
		t.Run(v, func(t *testing.T) {
			py := pyCmd(t, v)
			out := runPython(t, py, `
sl = shared_memory.ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42])
print(sl.format)
print(bytes(sl.shm.buf).hex())
sl.shm.close()
sl.shm.unlink()
`)
			lines := strings.Fields(out)
			if len(lines) != 2 {
				t.Fatalf("python printed %q", out)
			}
			if lines[0] != refFormat {
				t.Errorf("python format %q", lines[0])
			}
			if pyHex, goHex := lines[1], hexOf(b); pyHex != goHex {
				t.Errorf("bytes differ:\npython %s\ngo     %s", pyHex, goHex)
			}
		})
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestShareableListInteropGoCreated(t *testing.T) {
	checkLeaks(t)
	for _, v := range pythons(t) {
		t.Run(v, func(t *testing.T) {
			py := pyCmd(t, v)
			l, err := NewShareableList(testName(t), []any{"hello", []byte{1, 2, 3}, 1.5, int64(-7), nil, false, "é"})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Unlink()
			defer l.Close()
			out := runPython(t, py, `
sl = attach_list(sys.argv[1])
print(repr(list(sl)))
print(sl.format)
sl[0] = 'bye'
sl[1] = 42
sl[2] = None
sl[3] = 'seven'
sl[4] = b'\x01\x02'
sl[5] = True
sl[6] = 2.25
sl.shm.close()
`, l.Name())
			want := "['hello', b'\\x01\\x02\\x03', 1.5, -7, None, False, 'é']\n8s8sdqxxxxxx?xxxxxxxx?8s\n"
			if out != want {
				t.Errorf("python read %q, want %q", out, want)
			}
			got, err := l.Items()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]any{"bye", int64(42), nil, "seven", []byte{1, 2}, true, 2.25}, got); diff != "" {
				t.Errorf("Go read after python's writes (-want +got):\n%s", diff)
			}
			if f := l.Format(); f != "8sqxxxxxx?x8s8sxxxxxxx?d" {
				t.Errorf("format after python's writes %q", f)
			}
		})
	}
}

func TestShareableListInteropPythonCreated(t *testing.T) {
	checkLeaks(t)
	for _, v := range pythons(t) {
		t.Run(v, func(t *testing.T) {
			py := pyCmd(t, v)
			name := testName(t)
			runPython(t, py, `
sl = shared_memory.ShareableList([1, 'two', b'three', 4.0, None, True, 'x'*20], name=sys.argv[1])
untrack(sl.shm)
sl.shm.close()
`, name)
			l, err := OpenShareableList(name)
			if err != nil {
				os.Remove("/dev/shm/" + name)
				t.Fatal(err)
			}
			defer l.Unlink()
			defer l.Close()
			got, err := l.Items()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]any{int64(1), "two", []byte("three"), 4.0, nil, true, strings.Repeat("x", 20)}, got); diff != "" {
				t.Errorf("items (-want +got):\n%s", diff)
			}
			for i, v := range []any{"one", 2, nil, []byte("four"), 5.5, "six", strings.Repeat("y", 23)} {
				if err := l.Set(i, v); err != nil {
					t.Fatalf("Set(%d, %v): %v", i, v, err)
				}
			}
			if err := l.Set(6, strings.Repeat("z", 25)); !errors.Is(err, ErrItemTooLarge) {
				t.Errorf("Set(25 chars in a 24-byte slot) = %v", err)
			}
			out := runPython(t, py, `
sl = attach_list(sys.argv[1])
print(repr(list(sl)), sl.format)
sl.shm.close()
`, name)
			want := "['one', 2, None, b'four', 5.5, 'six', '" + strings.Repeat("y", 23) + "'] 8sqxxxxxx?x8sd8s24s\n"
			if out != want {
				t.Errorf("python read %q, want %q", out, want)
			}
		})
	}
}

func TestShareableListSemantics(t *testing.T) {
	checkLeaks(t)
	// _TestSharedMemory.test_shared_memory_ShareableList_basics.
	l, err := NewShareableList(testName(t), []any{"howdy", []byte("HoWdY"), -273.154, 100, nil, true, 42})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlink()
	defer l.Close()
	if l.Len() != 7 {
		t.Fatalf("Len %d", l.Len())
	}
	for _, i := range []int{-1, 7, 100} {
		if _, err := l.Get(i); !errors.Is(err, ErrIndex) {
			t.Errorf("Get(%d) = %v, want ErrIndex", i, err)
		}
		if err := l.Set(i, 1); !errors.Is(err, ErrIndex) {
			t.Errorf("Set(%d) = %v, want ErrIndex", i, err)
		}
	}
	// Type change: int -> str uses the 8-byte slot.
	if err := l.Set(3, "adios"); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Get(3); got != "adios" {
		t.Errorf("Get(3) = %v", got)
	}
	if f := l.Format(); f != "8s8sd8sxxxxxx?xxxxxxxx?q" {
		t.Errorf("format after int->str %q", f)
	}
	if err := l.Set(2, "encodés"); err != nil { // 8 bytes: fits exactly
		t.Errorf("Set(encodés) = %v", err)
	}
	if got, _ := l.Get(2); got != "encodés" {
		t.Errorf("Get(2) = %v", got)
	}
	if err := l.Set(2, "encodées"); !errors.Is(err, ErrItemTooLarge) { // 9 bytes
		t.Errorf("Set(encodées) = %v, want ErrItemTooLarge", err)
	}
	if err := l.Set(0, []byte("123456789")); !errors.Is(err, ErrItemTooLarge) {
		t.Errorf("Set(9 bytes) = %v", err)
	}
	if err := l.Set(0, "a\x00\x00"); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Get(0); got != "a" {
		t.Errorf("trailing NULs not stripped: %q", got)
	}
	if raw, _ := l.Raw(0); !bytes.Equal(raw, []byte("a\x00\x00\x00\x00\x00\x00\x00")) {
		t.Errorf("Raw(0) = %q", raw)
	}
	for _, v := range []any{int64(math.MaxInt64), int8(-3), uint32(7), float32(0.5), math.Inf(-1)} {
		if err := l.Set(6, v); err != nil {
			t.Errorf("Set(%T %v) = %v", v, v, err)
		}
	}
	if err := l.Set(6, uint64(math.MaxUint64)); err == nil {
		t.Error("Set(MaxUint64) accepted")
	}
	if err := l.Set(6, struct{}{}); err == nil {
		t.Error("Set(struct{}) accepted")
	}

	// Attach sees the same list.
	a, err := OpenShareableList(l.Name())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Get(3); got != "adios" || a.Len() != 7 || a.Format() != l.Format() {
		t.Errorf("attached: %v %d %q", got, a.Len(), a.Format())
	}
	a.Close()
	if _, err := a.Get(0); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v", err)
	}

	// Empty list (ShareableList()).
	e, err := NewShareableList("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Len() != 0 || e.Format() != "" || e.Segment().Size() != 16 {
		t.Errorf("empty list: len %d format %q size %d", e.Len(), e.Format(), e.Segment().Size())
	}
	e.Close()
	e.Unlink()
}

func TestShareableListSlotSizing(t *testing.T) {
	checkLeaks(t)
	// CPython gives 'ééééé' (5 characters, 10 bytes) an 8-byte slot and
	// truncates it; Go refuses rather than corrupt it.
	if _, err := NewShareableList(testName(t), []any{"ééééé"}); !errors.Is(err, ErrItemTooLarge) {
		t.Fatalf("NewShareableList(ééééé) = %v, want ErrItemTooLarge", err)
	}
	for _, bad := range [][]any{{"ok", struct{}{}}, {"\xff"}, {make([]byte, maxSlot)}, {uint64(math.MaxUint64)}} {
		if _, err := NewShareableList(testName(t), bad); err == nil {
			t.Errorf("NewShareableList(%.20v) accepted", bad)
		}
	}
	// 'encodés' is 7 characters and 8 bytes: slot 8, fits.
	l, err := NewShareableList(testName(t), []any{"encodés"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Format() != "8s" {
		t.Errorf("format %q", l.Format())
	}
	l.Close()
	l.Unlink()
	l, err = NewShareableList(testName(t), []any{"ééééé", "abc"}, ByteSizedSlots())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlink()
	defer l.Close()
	if got, _ := l.Get(0); got != "ééééé" || l.Format() != "16s8s" {
		t.Errorf("byte-sized: %v %q", got, l.Format())
	}
	py := mptest.Python(t)
	out := runPython(t, py, `
sl = attach_list(sys.argv[1])
print(list(sl))
sl.shm.close()
`, l.Name())
	if out != "['ééééé', 'abc']\n" {
		t.Errorf("python read %q", out)
	}
}

// FuzzShareableList decodes arbitrary bytes as a list: it must never
// panic or touch memory outside the buffer, and whatever parses must stay
// consistent when written to.
func FuzzShareableList(f *testing.F) {
	size, write := encodeList(refItems, false)
	ref := make([]byte, size)
	if _, err := write(ref); err != nil {
		f.Fatal(err)
	}
	f.Add(ref)
	size, write = encodeList([]any{"ééé", nil, 1.5, []byte("xxxxxxxxxxxxxxxxx")}, true)
	b := make([]byte, size)
	write(b)
	f.Add(b)
	f.Add(make([]byte, 16))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, buf []byte) {
		// Guard pages would be nicer; a copy with a canary tail catches
		// writes past the end instead.
		full := append(bytes.Clone(buf), 0xAA, 0xBB)
		mem := full[:len(buf):len(buf)]
		l, err := parseList(mem)
		if err != nil {
			return
		}
		for i := -1; i <= l.n && i < 64; i++ {
			l.get(i)
			if i >= 0 && i < l.n {
				var fb [8]byte
				l.format(i, &fb)
			}
		}
		// Whatever decodes re-encodes (with byte-sized slots, since a
		// foreign writer may have used them) and decodes to the same items.
		if items, err := (&ShareableList{l: l}).Items(); err == nil {
			size, write := encodeList(items, true)
			l2, err := write(make([]byte, size))
			if err != nil {
				t.Fatalf("decoded items %v do not encode: %v", items, err)
			}
			again, err := (&ShareableList{l: l2}).Items()
			// A foreign "s" item with code 0 reads as raw bytes, NULs
			// included, which then read back stripped, as bytes.
			for i, it := range items {
				if b, ok := it.([]byte); ok {
					items[i] = bytes.TrimRight(b, "\x00")
				}
			}
			if err != nil || !cmp.Equal(items, again, cmpopts.EquateNaNs(), cmpopts.EquateEmpty()) {
				t.Fatalf("round trip: %v -> %v, %v", items, again, err)
			}
			if p, err := parseList(l2.buf); err != nil || !cmp.Equal(p.offs, l2.offs) || p.fmts != l2.fmts || p.codes != l2.codes {
				t.Fatalf("encoder and decoder disagree on the layout: %v", err)
			}
		}
		for i := 0; i < l.n && i < 16; i++ {
			l.set(i, "abc")
			l.set(i, int64(5))
			if v, err := l.get(i); err != nil || v != int64(5) {
				if l.off(i+1)-l.off(i) >= 8 {
					t.Fatalf("item %d: wrote 5, read %v, %v", i, v, err)
				}
			}
			l.set(i, []byte("0123456789abcdef"))
		}
		if full[len(buf)] != 0xAA || full[len(buf)+1] != 0xBB {
			t.Fatal("write past the end of the buffer")
		}
	})
}

// TestEncodeListWritesEveryByte: NewShareableList encodes into a reused
// buffer, so the encoder must not rely on it being zeroed; and lists of
// 8-byte slots only, which keep no offset table, must lay out and decode
// as the others do.
func TestEncodeListWritesEveryByte(t *testing.T) {
	ints := make([]any, 300)
	for i := range ints {
		ints[i] = i * 7919
	}
	for _, items := range [][]any{nil, {1}, ints, refItems, {1.5, true, nil, 3, int64(-4)}, {"a", "", []byte{}, "12345678"}} {
		size, write := encodeList(items, false)
		clean := make([]byte, size)
		l, err := write(clean)
		if err != nil {
			t.Fatalf("%v: %v", items, err)
		}
		dirty := bytes.Repeat([]byte{0xa5}, size)
		if _, err := write(dirty); err != nil || !bytes.Equal(clean, dirty) {
			t.Fatalf("%v: encoding into a dirty buffer differs (%v)", items, err)
		}
		p, err := parseList(clean)
		if err != nil {
			t.Fatalf("%v: %v", items, err)
		}
		if p.fmts != l.fmts || p.codes != l.codes || (p.offs == nil) != (l.offs == nil) {
			t.Fatalf("%v: encoder and decoder disagree on the layout", items)
		}
		for i := range len(items) + 1 {
			if want := int(native.Uint64(clean[8+8*i:])); p.off(i) != want || l.off(i) != want {
				t.Fatalf("%v: offset %d: decoder %d, encoder %d, bytes %d", items, i, p.off(i), l.off(i), want)
			}
		}
		got, err := (&ShareableList{l: p}).Items()
		if err != nil || len(got) != len(items) {
			t.Fatalf("%v: read back %v, %v", items, got, err)
		}
	}
}

// TestShareableListIntsMatchPython: a list of ints only (the encoder's
// fast path, without an offset table) and one of 8-byte slots of every
// kind are byte for byte what CPython makes.
func TestShareableListIntsMatchPython(t *testing.T) {
	ints := make([]any, 1000)
	for i := range ints {
		ints[i] = i - 500
	}
	cases := []struct {
		items []any
		py    string
	}{
		{ints, "list(range(-500, 500))"},
		{[]any{1.5, true, nil, 3, false, -2}, "[1.5, True, None, 3, False, -2]"},
	}
	py := mptest.Python(t)
	for _, c := range cases {
		l, err := NewShareableList("", c.items)
		if err != nil {
			t.Fatal(err)
		}
		goHex := hexOf(l.Segment().Bytes())
		l.Close()
		if err := l.Unlink(); err != nil {
			t.Fatal(err)
		}
		out := strings.TrimSpace(runPython(t, py, `
sl = shared_memory.ShareableList(`+c.py+`)
print(bytes(sl.shm.buf).hex())
sl.shm.close()
sl.shm.unlink()
`))
		if out != goHex {
			t.Errorf("%s: bytes differ:\npython %s\ngo     %s", c.py, out, goHex)
		}
	}
}
