// SPDX-License-Identifier: Apache-2.0

package shm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"
)

// ShareableList is a fixed-length list of int64, float64, bool, string,
// []byte and nil values in one named segment, with the exact memory
// layout of CPython's multiprocessing.shared_memory.ShareableList: a
// Python process opens a Go list with ShareableList(name=l.Name()), and Go
// opens a Python list with OpenShareableList, both reading and writing.
//
// Layout (native byte order, little-endian on amd64 and arm64), with N
// items: the item count (int64); N+1 int64 offsets of the items' slots
// relative to the data area; the data area (8 bytes per number, bool or
// None; 8·(len//8+1) bytes for a str or bytes); N format strings of 8
// bytes ("q", "d", "xxxxxxx?", "xxxxxx?x", "16s"); N one-byte codes (0
// number or bool, 1 str, 2 bytes, 3 None). The segment is exactly that
// size.
//
// CPython's quirks, and what Go does about them:
//
//   - Slot sizing by characters: CPython sizes a str slot by its number of
//     code points, not its UTF-8 length, and silently truncates a longer
//     encoding (a 5-character "ééééé" gets an 8-byte slot and reads back
//     as "éééé"). NewShareableList sizes slots by the same rule, so that
//     its bytes are identical to CPython's, but refuses with
//     ErrItemTooLarge any string that would not fit instead of truncating
//     it. The ByteSizedSlots option sizes slots by UTF-8 length instead:
//     CPython reads and writes such a list normally.
//   - Set never truncates either: a str or bytes longer than its slot is
//     ErrItemTooLarge, as in CPython ("bytes/str item exceeds available
//     storage").
//   - Trailing NUL bytes are stripped on read, by CPython and by Get, so
//     "ab\x00" reads back as "ab" (gh-96779, gh-106939). Raw returns a
//     slot's bytes unstripped.
//   - An item whose code is 3 reads as nil whatever its bytes hold (a None
//     slot that a foreign writer filled, even with a NaN pattern).
//   - Ints are 64-bit; a value out of range (a uint64 above MaxInt64) is
//     refused, as CPython's struct.error does.
//   - There is no locking: concurrent writers of one item race, in Python
//     and in Go. Get and Set are not safe for concurrent use on the same
//     index without a lock; every access is bounds-checked against the
//     segment, so a racing or malicious writer can make a read fail or
//     return garbage but never read or write outside the segment.
//
// Int items read back as int64, whatever integer type wrote them; float32
// is stored as a float64.
type ShareableList struct {
	seg    *Segment
	l      *listLayout
	closed atomic.Bool
}

// ByteSizedSlots makes NewShareableList size string slots by the UTF-8
// length instead of CPython's character count, so that non-ASCII strings
// fit. CPython reads and writes the result normally; only the bytes differ
// from a list CPython would have created. Other constructors ignore it.
func ByteSizedSlots() Option { return func(o *options) { o.byteSlots = true } }

// Item codes of CPython's _back_transforms_mapping.
const (
	codeValue = 0
	codeStr   = 1
	codeBytes = 2
	codeNone  = 3
)

const (
	fmtInt  = "q"
	fmtF64  = "d"
	fmtBool = "xxxxxxx?"
	fmtNone = "xxxxxx?x"
	maxSlot = 9_999_999 // the largest slot whose format "%ds" fits in 8 bytes
)

var native = binary.NativeEndian

// boolTrue is the word of a true bool: CPython's "xxxxxxx?" puts the byte
// at offset 7.
var boolTrue = native.Uint64([]byte{0, 0, 0, 0, 0, 0, 0, 1})

// listLayout is the decoder over the raw bytes of a list. The count and
// the offsets are read once (as CPython does); formats, codes and values
// are read on every access and checked against the buffer each time.
type listLayout struct {
	buf   []byte
	n     int
	offs  []int // n+1 offsets into the data area; nil when offset i is 8·i
	data  int   // start of the data area
	fmts  int   // start of the format strings
	codes int   // start of the codes
}

// off returns the offset of item i's slot in the data area (i <= n).
// Lists of numbers, bools and Nones only, the common case, have 8-byte
// slots, and keep no table of offsets.
func (l *listLayout) off(i int) int {
	if l.offs == nil {
		return 8 * i
	}
	return l.offs[i]
}

// parseList validates the count and the offsets of a list in buf.
func parseList(buf []byte) (*listLayout, error) {
	if len(buf) < 16 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(buf))
	}
	n64 := int64(native.Uint64(buf))
	// 8 (count) + 8(n+1) (offsets) + 8n (formats) + n (codes) <= len(buf)
	if n64 < 0 || n64 > int64(len(buf)-16)/17 {
		return nil, fmt.Errorf("%w: item count %d does not fit in %d bytes", ErrCorrupt, n64, len(buf))
	}
	n := int(n64)
	l := &listLayout{buf: buf, n: n, data: 8 * (n + 2)}
	room := int64(len(buf) - l.data - 9*n) // bytes left for the data area
	prev := int64(0)
	for i := range n + 1 {
		o := int64(native.Uint64(buf[8+8*i:]))
		if o < prev || o > room {
			return nil, fmt.Errorf("%w: offset %d of item %d out of order or out of range", ErrCorrupt, o, i)
		}
		if l.offs == nil && o != 8*int64(i) {
			// Not all slots are 8 bytes: keep a table.
			l.offs = make([]int, n+1)
			for j := range i {
				l.offs[j] = 8 * j
			}
		}
		if l.offs != nil {
			l.offs[i] = int(o)
		}
		prev = o
	}
	l.fmts = l.data + l.off(n)
	l.codes = l.fmts + 8*n
	return l, nil
}

// format returns a copy of item i's format string without its NUL
// padding. Working on a copy matters: another process may rewrite the
// format while it is being interpreted.
func (l *listLayout) format(i int, dst *[8]byte) []byte {
	copy(dst[:], l.buf[l.fmts+8*i:l.fmts+8*i+8])
	return bytes.TrimRight(dst[:], "\x00")
}

// strWidth parses a "<n>s" format.
func strWidth(f []byte) (int, bool) {
	if len(f) < 2 || f[len(f)-1] != 's' {
		return 0, false
	}
	w, err := strconv.Atoi(string(f[:len(f)-1]))
	if err != nil || w < 0 || f[0] == '+' || f[0] == '-' {
		return 0, false
	}
	return w, true
}

func (l *listLayout) check(i int) error {
	if i < 0 || i >= l.n {
		return fmt.Errorf("%w: %d (length %d)", ErrIndex, i, l.n)
	}
	return nil
}

// raw returns item i's bytes as its format describes them.
func (l *listLayout) raw(i int, fbuf *[8]byte) (f []byte, b []byte, err error) {
	f = l.format(i, fbuf)
	off := l.data + l.off(i)
	w := 8
	switch string(f) {
	case fmtInt, fmtF64, fmtBool, fmtNone:
	default:
		var ok bool
		if w, ok = strWidth(f); !ok {
			return nil, nil, fmt.Errorf("%w: item %d has format %q", ErrCorrupt, i, f)
		}
	}
	if w > len(l.buf)-off {
		return nil, nil, fmt.Errorf("%w: item %d (%q at %d) overruns the segment", ErrCorrupt, i, f, off)
	}
	return f, l.buf[off : off+w], nil
}

func (l *listLayout) get(i int) (any, error) {
	if err := l.check(i); err != nil {
		return nil, err
	}
	var fbuf [8]byte
	f, b, err := l.raw(i, &fbuf)
	if err != nil {
		return nil, err
	}
	code := int8(l.buf[l.codes+i])
	isStr := f[len(f)-1] == 's'
	switch code {
	case codeNone:
		return nil, nil
	case codeValue:
		switch string(f) {
		case fmtInt:
			return int64(native.Uint64(b)), nil
		case fmtF64:
			return math.Float64frombits(native.Uint64(b)), nil
		case fmtBool:
			return b[7] != 0, nil
		case fmtNone:
			return b[6] != 0, nil
		}
		return bytes.Clone(b), nil // CPython returns the raw bytes of an "s" item with code 0
	case codeStr, codeBytes:
		if !isStr {
			return nil, fmt.Errorf("%w: item %d has code %d but format %q", ErrCorrupt, i, code, f)
		}
		b = bytes.TrimRight(bytes.Clone(b), "\x00") // a copy: the shared bytes may change
		if code == codeBytes {
			return b, nil
		}
		if !utf8.Valid(b) {
			return nil, fmt.Errorf("%w: item %d is not valid UTF-8", ErrCorrupt, i)
		}
		return string(b), nil
	}
	return nil, fmt.Errorf("%w: item %d has unknown code %d", ErrCorrupt, i, code)
}

// item is a value ready to be stored: its kind and either an 8-byte word
// or the bytes of a str/bytes.
type item struct {
	kind uint8
	word uint64
	str  string // the bytes of a str or bytes (aliasing a []byte: read only)
	n    int    // for strings: CPython's slot-sizing length (characters for str)
}

// Item kinds, with their codes and formats.
const (
	kInt uint8 = iota
	kF64
	kBool
	kNone
	kStr
	kBytes
)

var kindCode = [...]int8{kInt: codeValue, kF64: codeValue, kBool: codeValue, kNone: codeNone, kStr: codeStr, kBytes: codeBytes}
var kindFmt = [...]string{kInt: fmtInt, kF64: fmtF64, kBool: fmtBool, kNone: fmtNone}

func (it *item) isS() bool { return it.kind >= kStr }

// toItem converts v. (It fills *it rather than returning an item: that is
// several times faster for the 1000-int lists of the benchmarks.)
func toItem(it *item, v any) error {
	switch x := v.(type) { // the common types first
	case int:
		it.kind, it.word = kInt, uint64(x)
	case int64:
		it.kind, it.word = kInt, uint64(x)
	case float64:
		it.kind, it.word = kF64, math.Float64bits(x)
	case string:
		if !utf8.ValidString(x) {
			return errNotUTF8
		}
		it.kind, it.str, it.n = kStr, x, utf8.RuneCountInString(x)
	case bool:
		it.kind, it.word = kBool, 0
		if x {
			it.word = boolTrue
		}
	case nil:
		it.kind, it.word = kNone, 0
	case []byte:
		it.kind, it.str, it.n = kBytes, unsafe.String(unsafe.SliceData(x), len(x)), len(x)
	case float32:
		it.kind, it.word = kF64, math.Float64bits(float64(x))
	default:
		return toItemSlow(it, v)
	}
	return nil
}

var errNotUTF8 = errors.New("shm: shareable list strings must be valid UTF-8")

// toItemSlow converts the other integer types.
func toItemSlow(it *item, v any) error {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		it.kind, it.word = kInt, uint64(rv.Int())
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if rv.Uint() > math.MaxInt64 {
			return fmt.Errorf("shm: shareable list int %d does not fit in an int64", rv.Uint())
		}
		it.kind, it.word = kInt, rv.Uint()
		return nil
	}
	return fmt.Errorf("shm: shareable list items are int, float64, bool, string, []byte or nil, not %T", v)
}

// putFormat writes an 8-byte NUL-padded format field.
func putFormat(dst []byte, f string) {
	n := copy(dst[:8], f)
	clear(dst[n:8])
}

func (l *listLayout) set(i int, v any) error {
	if err := l.check(i); err != nil {
		return err
	}
	var it item
	if err := toItem(&it, v); err != nil {
		return err
	}
	o := l.off(i)
	off := l.data + o
	capacity := l.off(i+1) - o
	fpos := l.fmts + 8*i
	if !it.isS() {
		if capacity < 8 || off+8 > len(l.buf) {
			return fmt.Errorf("%w: item %d has a slot of %d bytes", ErrCorrupt, i, capacity)
		}
		putFormat(l.buf[fpos:], kindFmt[it.kind])
		l.buf[l.codes+i] = byte(kindCode[it.kind])
		native.PutUint64(l.buf[off:], it.word)
		return nil
	}
	if len(it.str) > capacity {
		return fmt.Errorf("%w: item %d has %d bytes of storage, the value needs %d", ErrItemTooLarge, i, capacity, len(it.str))
	}
	// CPython keeps the format of a slot that already holds a str/bytes
	// and writes as many bytes as it says; else the format becomes the
	// capacity.
	var fbuf [8]byte
	w, ok := strWidth(l.format(i, &fbuf))
	if !ok || w > capacity {
		w = capacity
		putFormat(l.buf[fpos:], strconv.Itoa(capacity)+"s")
	}
	if len(it.str) > w {
		return fmt.Errorf("%w: item %d has a format of %d bytes, the value needs %d", ErrItemTooLarge, i, w, len(it.str))
	}
	l.buf[l.codes+i] = byte(kindCode[it.kind])
	dst := l.buf[off : off+w]
	n := copy(dst, it.str)
	clear(dst[n:])
	return nil
}

// slotOf returns the slot size of an item, or an error if CPython's
// layout cannot hold it.
func slotOf(it *item, i int, byteSlots bool) (int, error) {
	if !it.isS() {
		return 8, nil
	}
	count := it.n
	if byteSlots {
		count = len(it.str)
	}
	slot := 8 * (count/8 + 1)
	if slot > maxSlot {
		return 0, fmt.Errorf("%w: item %d needs a slot of %d bytes; CPython's format allows %d", ErrItemTooLarge, i, slot, maxSlot)
	}
	if len(it.str) > slot {
		return 0, fmt.Errorf("%w: item %d: CPython sizes the slot of a %d-character string at %d bytes, its UTF-8 needs %d (use ByteSizedSlots)", ErrItemTooLarge, i, it.n, slot, len(it.str))
	}
	return slot, nil
}

// encodeList computes the layout of items: the segment size, and a
// function writing the list into a buffer of that size (every byte of it:
// the buffer need not be zeroed) and returning its layout, or an error for
// an item that cannot be stored. It does not keep items: the first pass
// only sizes the string slots.
func encodeList(items []any, byteSlots bool) (int, func([]byte) (*listLayout, error)) {
	n := len(items)
	k := 8 * n // the data area: 8 bytes a slot, more for strings
	allInts := true
	for _, v := range items {
		if _, ok := v.(int); ok { // the common case first
			continue
		}
		allInts = false
		count := -1
		switch x := v.(type) {
		case string:
			count = len(x)
			if !byteSlots {
				count = utf8.RuneCountInString(x)
			}
		case []byte:
			count = len(x)
		}
		if count >= 0 {
			k += 8 * (count / 8) // a slot of 8·(count/8+1) bytes
		}
	}
	data := 8 * (n + 2)
	size := data + k + 9*n
	write := func(buf []byte) (*listLayout, error) {
		l := &listLayout{buf: buf, n: n, data: data, fmts: data + k, codes: data + k + 8*n}
		native.PutUint64(buf, uint64(n))
		offs := buf[8 : 8+8*(n+1)]
		dat := buf[data : data+k]
		fmts := buf[l.fmts : l.fmts+8*n]
		codes := buf[l.codes : l.codes+n]
		if allInts {
			// Every slot is 8 bytes: offset 8·i, format "q", code 0.
			for i, v := range items {
				o := 8 * i
				native.PutUint64(offs[o:o+8], uint64(o))
				native.PutUint64(dat[o:o+8], uint64(v.(int)))
				native.PutUint64(fmts[o:o+8], fmtIntWord)
			}
			native.PutUint64(offs[8*n:], uint64(8*n))
			clear(codes)
			return l, nil
		}
		clear(buf[8:])
		if k != 8*n { // some slots are longer than 8 bytes
			l.offs = make([]int, n+1)
		}
		off := 0
		var it item
		for i, v := range items {
			if l.offs != nil {
				l.offs[i] = off
			}
			native.PutUint64(offs[8*i:], uint64(off))
			if x, ok := v.(int); ok { // the common case, inline
				native.PutUint64(dat[off:], uint64(x))
				fmts[8*i] = 'q'
				off += 8
				continue
			}
			if err := toItem(&it, v); err != nil {
				return nil, fmt.Errorf("%w (item %d)", err, i)
			}
			slot, err := slotOf(&it, i, byteSlots)
			if err != nil {
				return nil, err
			}
			f := fmts[8*i : 8*i+8]
			if it.isS() {
				copy(dat[off:], it.str)
				if slot < 10 {
					f[0], f[1] = byte('0'+slot), 's'
				} else {
					copy(f, strconv.Itoa(slot)+"s")
				}
			} else {
				native.PutUint64(dat[off:], it.word)
				switch it.kind {
				case kInt:
					f[0] = 'q'
				case kF64:
					f[0] = 'd'
				default:
					copy(f, kindFmt[it.kind])
				}
			}
			codes[i] = byte(kindCode[it.kind])
			off += slot
		}
		if l.offs != nil {
			l.offs[n] = off
		}
		native.PutUint64(offs[8*n:], uint64(off))
		return l, nil
	}
	return size, write
}

// fmtIntWord is the 8-byte format field "q" and its NUL padding.
var fmtIntWord = native.Uint64([]byte{'q', 0, 0, 0, 0, 0, 0, 0})

var listBufs = sync.Pool{New: func() any { return new([]byte) }}

// NewShareableList creates a named segment (see Create for name and opts;
// "" picks a "psm_" name) holding items, laid out exactly as CPython's
// ShareableList(items) would. Items are int (any Go integer type that
// fits an int64), float64 (or float32), bool, string, []byte or nil. An
// empty list is allowed.
func NewShareableList(name string, items []any, opts ...Option) (*ShareableList, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	size, write := encodeList(items, o.byteSlots)
	// Encode into ordinary memory and write it into the new file: much
	// cheaper than faulting in each fresh page of the mapping.
	bp := listBufs.Get().(*[]byte)
	if cap(*bp) < size {
		*bp = make([]byte, size)
	}
	l, err := write((*bp)[:size])
	if err != nil {
		listBufs.Put(bp)
		return nil, err
	}
	seg, err := create(name, size, (*bp)[:size], opts)
	listBufs.Put(bp)
	if err != nil {
		return nil, err
	}
	l.buf = seg.mem
	return &ShareableList{seg: seg, l: l}, nil
}

// OpenShareableList attaches to the list in the named segment (created by
// Go or by CPython). It fails with ErrCorrupt if the segment does not hold
// a valid count and offsets.
func OpenShareableList(name string) (*ShareableList, error) {
	seg, err := Open(name)
	if err != nil {
		return nil, err
	}
	l, err := parseList(seg.mem)
	if err != nil {
		seg.Close()
		return nil, fmt.Errorf("shm: open shareable list %q: %w", seg.name, err)
	}
	return &ShareableList{seg: seg, l: l}, nil
}

// Len returns the number of items (fixed when the list was made).
func (s *ShareableList) Len() int { return s.l.n }

// Get returns item i: an int64, float64, bool, string, []byte (a copy) or
// nil. It returns ErrIndex for i outside [0, Len()), and ErrCorrupt when
// the item's format or code is invalid (for instance a string cut in the
// middle of a UTF-8 sequence by a CPython writer).
func (s *ShareableList) Get(i int) (any, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return s.l.get(i)
}

// Set stores v at index i; its type may differ from the item's previous
// type. A string or []byte longer than the slot gives ErrItemTooLarge and
// changes nothing.
func (s *ShareableList) Set(i int, v any) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.l.set(i, v)
}

// Items returns all items (Python's list(sl)).
func (s *ShareableList) Items() ([]any, error) {
	out := make([]any, s.l.n)
	for i := range out {
		v, err := s.Get(i)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// Raw returns a copy of the bytes of item i as its format describes them,
// without stripping trailing NULs.
func (s *ShareableList) Raw(i int) ([]byte, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if err := s.l.check(i); err != nil {
		return nil, err
	}
	var fbuf [8]byte
	_, b, err := s.l.raw(i, &fbuf)
	return bytes.Clone(b), err
}

// Format returns the concatenated struct formats of the items, CPython's
// ShareableList.format, e.g. "8s8sdqxxxxxx?xxxxxxxx?q".
func (s *ShareableList) Format() string {
	if s.closed.Load() {
		return ""
	}
	var b []byte
	for i := range s.l.n {
		var fbuf [8]byte
		b = append(b, s.l.format(i, &fbuf)...)
	}
	return string(b)
}

// Name returns the name of the list's segment (no leading "/").
func (s *ShareableList) Name() string { return s.seg.name }

// Segment returns the list's segment.
func (s *ShareableList) Segment() *Segment { return s.seg }

// Close unmaps the list in this process; it must not be used afterwards.
// Close is idempotent.
func (s *ShareableList) Close() error {
	s.closed.Store(true)
	return s.seg.Close()
}

// Unlink removes the list's segment from /dev/shm (see Segment.Unlink).
func (s *ShareableList) Unlink() error { return s.seg.Unlink() }

// MultiprocHandle describes the list so that a child can rebuild it with
// MultiprocAttach (by fd, as for a Segment).
func (s *ShareableList) MultiprocHandle() ([]*os.File, []byte, error) {
	if s.closed.Load() {
		return nil, nil, ErrClosed
	}
	return s.seg.MultiprocHandle()
}

// MultiprocAttach makes the zero ShareableList s the list that
// MultiprocHandle described in another process. It takes ownership of
// files.
func (s *ShareableList) MultiprocAttach(files []*os.File, desc []byte) error {
	if s.seg != nil {
		closeFiles(files)
		return fmt.Errorf("%w: MultiprocAttach on a list in use", ErrBadHandle)
	}
	seg := new(Segment)
	if err := seg.MultiprocAttach(files, desc); err != nil {
		return err
	}
	l, err := parseList(seg.mem)
	if err != nil {
		seg.Close()
		return err
	}
	s.seg, s.l = seg, l
	return nil
}
