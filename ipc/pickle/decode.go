// SPDX-License-Identifier: Apache-2.0

package pickle

import (
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"strconv"
	"unicode/utf8"
)

// Containers while decoding: pointers, so that memo references and
// APPEND/SETITEM see one object, as in Python. finalize turns them into
// the public types.
type (
	pyList  struct{ items []any }
	pyTuple struct{ items []any }
	pySet   struct {
		items []any
		seen  map[any]struct{}
	}
	pyFrozen struct{ items []any }
)

// Opcodes (CPython's Lib/pickletools.py names them).
const (
	opMark            = '('
	opStop            = '.'
	opPop             = '0'
	opPopMark         = '1'
	opDup             = '2'
	opNone            = 'N'
	opBinInt          = 'J'
	opBinInt1         = 'K'
	opBinInt2         = 'M'
	opBinFloat        = 'G'
	opBinBytes        = 'B'
	opShortBinBytes   = 'C'
	opBinUnicode      = 'X'
	opEmptyList       = ']'
	opAppend          = 'a'
	opAppends         = 'e'
	opList            = 'l'
	opEmptyTuple      = ')'
	opTuple           = 't'
	opEmptyDict       = '}'
	opDict            = 'd'
	opSetItem         = 's'
	opSetItems        = 'u'
	opBinGet          = 'h'
	opLongBinGet      = 'j'
	opBinPut          = 'q'
	opLongBinPut      = 'r'
	opGlobal          = 'c'
	opReduce          = 'R'
	opBuild           = 'b'
	opProto           = 0x80
	opNewObj          = 0x81
	opTuple1          = 0x85
	opTuple2          = 0x86
	opTuple3          = 0x87
	opNewTrue         = 0x88
	opNewFalse        = 0x89
	opLong1           = 0x8a
	opLong4           = 0x8b
	opShortBinUnicode = 0x8c
	opBinUnicode8     = 0x8d
	opBinBytes8       = 0x8e
	opEmptySet        = 0x8f
	opAddItems        = 0x90
	opFrozenSet       = 0x91
	opNewObjEx        = 0x92
	opStackGlobal     = 0x93
	opMemoize         = 0x94
	opFrame           = 0x95
	opByteArray8      = 0x96
)

// unsupportedOps are valid opcodes this package refuses, with the reason.
var unsupportedOps = map[byte]string{
	'I': "INT (protocol 0 text)", 'L': "LONG (protocol 0 text)", 'F': "FLOAT (protocol 0 text)",
	'S': "STRING (protocol 0 text)", 'V': "UNICODE (protocol 0 text)",
	'T': "BINSTRING (Python 2 str)", 'U': "SHORT_BINSTRING (Python 2 str)",
	'p': "PUT (protocol 0 text)", 'g': "GET (protocol 0 text)",
	'i': "INST (runs a constructor)", 'o': "OBJ (runs a constructor)",
	'P': "PERSID (persistent ids)", 'Q': "BINPERSID (persistent ids)",
	0x82: "EXT1 (extension registry)", 0x83: "EXT2 (extension registry)", 0x84: "EXT4 (extension registry)",
	0x97: "NEXT_BUFFER (out-of-band buffers)", 0x98: "READONLY_BUFFER (out-of-band buffers)",
}

var (
	errStop      = errors.New("stop")
	errTruncated = malformed("truncated pickle")
	errNoMark    = malformed("no MARK on the stack")
	errEmpty     = malformed("stack underflow")
)

type malformedError string

func (e malformedError) Error() string { return string(e) }
func (e malformedError) Unwrap() error { return ErrMalformed }

func malformed(s string) error { return malformedError(s) }

type unsupportedError string

func (e unsupportedError) Error() string { return "unsupported: " + string(e) }
func (e unsupportedError) Unwrap() error { return ErrUnsupported }

type decoder struct {
	c      *Codec
	data   []byte
	pos    int
	stack  []any
	marks  []int
	memo   map[uint32]any
	hcache map[any]string
	tokens map[*Token]bool // Tokens made by NEWOBJ and not yet given their state
	pushes int             // values pushed so far: objects and references made
	shared map[any]bool    // containers the memo or DUP references more than once
	seen   map[any]any     // finalize: shared container -> public value
}

// share records that v may be referenced more than once.
func (d *decoder) share(v any) {
	switch v.(type) {
	case *pyList, *pyTuple, *pySet, *pyFrozen, *Dict, *Exception, *Token:
		if d.shared == nil {
			d.shared = make(map[any]bool)
		}
		d.shared[v] = true
	}
}

func (d *decoder) decode() (any, error) {
	for {
		if d.pos >= len(d.data) {
			return nil, &DecodeError{Offset: d.pos, Err: malformed("no STOP opcode")}
		}
		start := d.pos
		op := d.data[d.pos]
		d.pos++
		if err := d.step(op); err != nil {
			if err == errStop {
				break
			}
			return nil, &DecodeError{Offset: start, Op: op, Err: err}
		}
		if d.pushes > d.c.maxItems {
			return nil, &DecodeError{Offset: start, Op: op, Err: &LimitError{Limit: "items", Max: int64(d.c.maxItems)}}
		}
	}
	if d.pos != len(d.data) {
		return nil, &DecodeError{Offset: d.pos, Err: malformed("data after STOP")}
	}
	if len(d.stack) != 1 || len(d.marks) != 0 {
		return nil, &DecodeError{Offset: d.pos - 1, Op: opStop, Err: malformed("STOP with a stack of more than one value")}
	}
	v, err := d.finalize(d.stack[0], 0)
	if err != nil {
		return nil, &DecodeError{Offset: d.pos - 1, Op: opStop, Err: err}
	}
	return v, nil
}

func (d *decoder) read(n uint64) ([]byte, error) {
	if n > uint64(len(d.data)-d.pos) {
		return nil, errTruncated
	}
	b := d.data[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return b, nil
}

func (d *decoder) readUint(n int) (uint64, error) {
	b, err := d.read(uint64(n))
	if err != nil {
		return 0, err
	}
	var u uint64
	for i := n - 1; i >= 0; i-- {
		u = u<<8 | uint64(b[i])
	}
	return u, nil
}

// readLen reads an n-byte little-endian length and the bytes it announces,
// checking the length against what is left before using it.
func (d *decoder) readLen(n int) ([]byte, error) {
	l, err := d.readUint(n)
	if err != nil {
		return nil, err
	}
	return d.read(l)
}

func (d *decoder) push(v any) {
	d.pushes++
	d.stack = grow(d.stack, 1)
	d.stack = append(d.stack, v)
}

// base is the index where the current mark's items start.
func (d *decoder) base() int {
	if len(d.marks) == 0 {
		return 0
	}
	return d.marks[len(d.marks)-1]
}

func (d *decoder) pop() (any, error) {
	if len(d.stack) <= d.base() {
		return nil, errEmpty
	}
	v := d.stack[len(d.stack)-1]
	d.stack = d.stack[:len(d.stack)-1]
	return v, nil
}

func (d *decoder) top() (any, error) {
	if len(d.stack) <= d.base() {
		return nil, errEmpty
	}
	return d.stack[len(d.stack)-1], nil
}

// popMark removes the items above the last mark, and the mark. The
// returned slice is the caller's.
func (d *decoder) popMark() ([]any, error) {
	if len(d.marks) == 0 {
		return nil, errNoMark
	}
	m := d.marks[len(d.marks)-1]
	d.marks = d.marks[:len(d.marks)-1]
	items := make([]any, len(d.stack)-m)
	copy(items, d.stack[m:])
	clear(d.stack[m:])
	d.stack = d.stack[:m]
	return items, nil
}

func (d *decoder) step(op byte) error {
	switch op {
	case opProto:
		b, err := d.read(1)
		if err != nil {
			return err
		}
		if b[0] > 5 {
			return unsupportedError("protocol " + strconv.Itoa(int(b[0])))
		}
	case opFrame:
		n, err := d.readUint(8)
		if err != nil {
			return err
		}
		if n > uint64(len(d.data)-d.pos) {
			return errTruncated
		}
	case opStop:
		return errStop
	case opMark:
		if len(d.marks) >= d.c.maxDepth {
			return &LimitError{Limit: "depth", Max: int64(d.c.maxDepth)}
		}
		d.marks = append(d.marks, len(d.stack))
	case opPop:
		if len(d.stack) > d.base() {
			d.pop()
			return nil
		}
		_, err := d.popMark()
		return err
	case opPopMark:
		_, err := d.popMark()
		return err
	case opDup:
		v, err := d.top()
		if err != nil {
			return err
		}
		d.share(v)
		d.push(v)
	case opNone:
		d.push(nil)
	case opNewTrue:
		d.push(true)
	case opNewFalse:
		d.push(false)
	case opBinInt:
		u, err := d.readUint(4)
		if err != nil {
			return err
		}
		d.push(int64(int32(uint32(u))))
	case opBinInt1:
		u, err := d.readUint(1)
		if err != nil {
			return err
		}
		d.push(int64(u))
	case opBinInt2:
		u, err := d.readUint(2)
		if err != nil {
			return err
		}
		d.push(int64(u))
	case opLong1, opLong4:
		n := 1
		if op == opLong4 {
			n = 4
		}
		l, err := d.readUint(n)
		if err != nil {
			return err
		}
		if op == opLong4 && int32(uint32(l)) < 0 {
			return malformed("LONG4 with a negative length")
		}
		b, err := d.read(l)
		if err != nil {
			return err
		}
		d.push(decodeLong(b))
	case opBinFloat:
		b, err := d.read(8)
		if err != nil {
			return err
		}
		d.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case opShortBinBytes, opBinBytes, opBinBytes8, opByteArray8:
		b, err := d.readLen(lenSize(op))
		if err != nil {
			return err
		}
		b = append([]byte{}, b...)
		if op == opByteArray8 {
			d.push(ByteArray(b))
		} else {
			d.push(b)
		}
	case opShortBinUnicode, opBinUnicode, opBinUnicode8:
		b, err := d.readLen(lenSize(op))
		if err != nil {
			return err
		}
		if !utf8.Valid(b) {
			return malformed("str is not valid UTF-8 (lone surrogates are not supported)")
		}
		d.push(string(b))
	case opEmptyList:
		d.push(&pyList{})
	case opList:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		d.push(&pyList{items: items})
	case opAppend:
		v, err := d.pop()
		if err != nil {
			return err
		}
		return d.extend([]any{v})
	case opAppends:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		return d.extend(items)
	case opEmptyTuple:
		d.push(&pyTuple{})
	case opTuple1, opTuple2, opTuple3:
		n := int(op-opTuple1) + 1
		if len(d.stack)-d.base() < n {
			return errEmpty
		}
		items := append([]any{}, d.stack[len(d.stack)-n:]...)
		d.stack = d.stack[:len(d.stack)-n]
		d.push(&pyTuple{items: items})
	case opTuple:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		d.push(&pyTuple{items: items})
	case opEmptyDict:
		d.push(&Dict{})
	case opDict:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		dict := &Dict{}
		if err := d.setItems(dict, items); err != nil {
			return err
		}
		d.push(dict)
	case opSetItem:
		v, err := d.pop()
		if err != nil {
			return err
		}
		k, err := d.pop()
		if err != nil {
			return err
		}
		return d.setItemsOnTop([]any{k, v})
	case opSetItems:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		return d.setItemsOnTop(items)
	case opEmptySet:
		d.push(&pySet{})
	case opAddItems:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		t, err := d.top()
		if err != nil {
			return err
		}
		s, ok := t.(*pySet)
		if !ok {
			return malformed("ADDITEMS to a " + pyTypeName(t))
		}
		return d.addItems(s, items)
	case opFrozenSet:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		items, err = d.dedup(items)
		if err != nil {
			return err
		}
		d.push(&pyFrozen{items: items})
	case opBinPut, opLongBinPut, opMemoize:
		var idx uint64
		var err error
		switch op {
		case opBinPut:
			idx, err = d.readUint(1)
		case opLongBinPut:
			idx, err = d.readUint(4)
		default:
			idx = uint64(len(d.memo))
		}
		if err != nil {
			return err
		}
		v, err := d.top()
		if err != nil {
			return err
		}
		if d.memo == nil {
			d.memo = make(map[uint32]any)
		}
		if _, ok := d.memo[uint32(idx)]; !ok && len(d.memo) >= d.c.maxMemo {
			return &LimitError{Limit: "memo", Max: int64(d.c.maxMemo)}
		}
		d.memo[uint32(idx)] = v
		d.share(v)
	case opBinGet, opLongBinGet:
		n := 1
		if op == opLongBinGet {
			n = 4
		}
		idx, err := d.readUint(n)
		if err != nil {
			return err
		}
		v, ok := d.memo[uint32(idx)]
		if !ok {
			return malformed("memo key " + strconv.Itoa(int(idx)) + " not found")
		}
		d.push(v)
	case opGlobal:
		module, err := d.readLine()
		if err != nil {
			return err
		}
		name, err := d.readLine()
		if err != nil {
			return err
		}
		g, err := resolveGlobal(module, name)
		if err != nil {
			return err
		}
		d.push(g)
	case opStackGlobal:
		n, err := d.pop()
		if err != nil {
			return err
		}
		m, err := d.pop()
		if err != nil {
			return err
		}
		module, ok1 := m.(string)
		name, ok2 := n.(string)
		if !ok1 || !ok2 {
			return malformed("STACK_GLOBAL needs two str")
		}
		g, err := resolveGlobal(module, name)
		if err != nil {
			return err
		}
		d.push(g)
	case opReduce:
		a, err := d.pop()
		if err != nil {
			return err
		}
		f, err := d.pop()
		if err != nil {
			return err
		}
		g, ok := f.(global)
		if !ok {
			return malformed("REDUCE on a " + pyTypeName(f))
		}
		args, ok := a.(*pyTuple)
		if !ok {
			return malformed("REDUCE with arguments that are not a tuple")
		}
		v, err := d.call(g, args.items)
		if err != nil {
			return err
		}
		d.push(v)
	case opNewObj, opNewObjEx:
		if op == opNewObjEx {
			kw, err := d.pop()
			if err != nil {
				return err
			}
			if k, ok := kw.(*Dict); !ok || k.Len() != 0 {
				return malformed("NEWOBJ_EX with keyword arguments")
			}
		}
		a, err := d.pop()
		if err != nil {
			return err
		}
		c, err := d.pop()
		if err != nil {
			return err
		}
		g, ok := c.(global)
		if !ok {
			return malformed("NEWOBJ on a " + pyTypeName(c))
		}
		if g.kind != gToken {
			return &GlobalError{Module: g.module, Name: g.name, Reason: "cannot be instantiated with NEWOBJ"}
		}
		if args, ok := a.(*pyTuple); !ok || len(args.items) != 0 {
			return &GlobalError{Module: g.module, Name: g.name, Reason: "NEWOBJ with arguments"}
		}
		t := &Token{}
		if d.tokens == nil {
			d.tokens = make(map[*Token]bool)
		}
		d.tokens[t] = true
		d.push(t)
	case opBuild:
		state, err := d.pop()
		if err != nil {
			return err
		}
		obj, err := d.top()
		if err != nil {
			return err
		}
		return d.build(obj, state)
	default:
		if why, ok := unsupportedOps[op]; ok {
			return unsupportedError(why)
		}
		return malformed("unknown opcode")
	}
	return nil
}

func lenSize(op byte) int {
	switch op {
	case opShortBinBytes, opShortBinUnicode:
		return 1
	case opBinBytes, opBinUnicode:
		return 4
	}
	return 8
}

// readLine reads a GLOBAL operand: a short line of text.
func (d *decoder) readLine() (string, error) {
	const max = 256
	for i := d.pos; i < len(d.data) && i-d.pos <= max; i++ {
		if d.data[i] == '\n' {
			s := d.data[d.pos:i]
			d.pos = i + 1
			if !utf8.Valid(s) {
				return "", malformed("GLOBAL name is not valid UTF-8")
			}
			return string(s), nil
		}
	}
	return "", malformed("GLOBAL without a newline within 256 bytes")
}

// cache returns the memo of hash keys of decoded tuples and frozensets.
func (d *decoder) cache() map[any]string {
	if d.hcache == nil {
		d.hcache = make(map[any]string)
	}
	return d.hcache
}

func (d *decoder) extend(items []any) error {
	t, err := d.top()
	if err != nil {
		return err
	}
	l, ok := t.(*pyList)
	if !ok {
		return malformed("APPEND to a " + pyTypeName(t))
	}
	l.items = grow(l.items, len(items))
	l.items = append(l.items, items...)
	return nil
}

func (d *decoder) setItemsOnTop(items []any) error {
	t, err := d.top()
	if err != nil {
		return err
	}
	dict, ok := t.(*Dict)
	if !ok {
		return malformed("SETITEM on a " + pyTypeName(t))
	}
	return d.setItems(dict, items)
}

func (d *decoder) setItems(dict *Dict, items []any) error {
	if len(items)%2 != 0 {
		return malformed("odd number of items for a dict")
	}
	for i := 0; i < len(items); i += 2 {
		h, err := hashKey(items[i], d.cache())
		if err != nil {
			return err
		}
		dict.setHashed(h, items[i], items[i+1])
	}
	return nil
}

func (d *decoder) addItems(s *pySet, items []any) error {
	if s.seen == nil {
		s.seen = make(map[any]struct{}, len(items))
	}
	for _, it := range items {
		h, err := hashKey(it, d.cache())
		if err != nil {
			return err
		}
		if _, dup := s.seen[h]; dup {
			continue
		}
		s.seen[h] = struct{}{}
		s.items = grow(s.items, 1)
		s.items = append(s.items, it)
	}
	return nil
}

// dedup removes items equal to an earlier one, as building a Python set
// does, and fails on an unhashable item.
func (d *decoder) dedup(items []any) ([]any, error) {
	seen := make(map[any]struct{}, len(items))
	out := items[:0:0]
	for _, it := range items {
		h, err := hashKey(it, d.cache())
		if err != nil {
			return nil, err
		}
		if _, dup := seen[h]; dup {
			continue
		}
		seen[h] = struct{}{}
		out = append(out, it)
	}
	return out, nil
}

// build applies BUILD's state to a Token or an exception.
func (d *decoder) build(obj, state any) error {
	switch o := obj.(type) {
	case *Token:
		if !d.tokens[o] {
			return malformed("BUILD on a Token twice")
		}
		t, ok := state.(*pyTuple)
		if !ok || len(t.items) != 3 {
			return malformed("Token state is not a 3-tuple")
		}
		typeid, ok1 := t.items[0].(string)
		id, ok2 := t.items[2].(string)
		if !ok1 || !ok2 {
			return malformed("Token typeid and id must be str")
		}
		o.TypeID, o.Address, o.ID = typeid, t.items[1], id
		delete(d.tokens, o)
	case *Exception:
		switch s := state.(type) {
		case nil:
		case *Dict:
			if o.State != nil {
				return malformed("BUILD on an exception twice")
			}
			o.State = s
		default:
			return malformed("exception state is a " + pyTypeName(state))
		}
	default:
		return malformed("BUILD on a " + pyTypeName(obj))
	}
	return nil
}

// decodeLong decodes LONG1/LONG4's little-endian two's complement.
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var u uint64
		for i := len(b) - 1; i >= 0; i-- {
			u = u<<8 | uint64(b[i])
		}
		shift := 64 - 8*uint(len(b))
		return int64(u<<shift) >> shift
	}
	be := make([]byte, len(b))
	for i, c := range b {
		be[len(b)-1-i] = c
	}
	n := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if n.IsInt64() {
		return n.Int64()
	}
	return n
}

// finalize turns decoder-internal containers into the public types, in
// place, keeping shared objects shared and bounding the nesting depth.
func (d *decoder) finalize(v any, depth int) (any, error) {
	if depth > d.c.maxDepth {
		return nil, &LimitError{Limit: "depth", Max: int64(d.c.maxDepth)}
	}
	shared := false
	switch v.(type) {
	case *pyList, *pyTuple, *pySet, *pyFrozen, *Dict, *Exception, *Token:
		shared = d.shared[v]
	}
	if shared {
		if out, ok := d.seen[v]; ok {
			return out, nil
		}
		if d.seen == nil {
			d.seen = make(map[any]any)
		}
	}
	var err error
	switch x := v.(type) {
	case *pyList:
		out := x.items
		if out == nil {
			out = []any{}
		}
		d.remember(shared, v, out)
		return out, d.finalizeInto(out, depth)
	case *pyTuple:
		out := Tuple(x.items)
		if out == nil {
			out = Tuple{}
		}
		d.remember(shared, v, out)
		return out, d.finalizeInto(out, depth)
	case *pySet:
		out := Set(x.items)
		if out == nil {
			out = Set{}
		}
		d.remember(shared, v, out)
		return out, d.finalizeInto(out, depth)
	case *pyFrozen:
		out := FrozenSet(x.items)
		if out == nil {
			out = FrozenSet{}
		}
		d.remember(shared, v, out)
		return out, d.finalizeInto(out, depth)
	case *Dict:
		d.remember(shared, v, x)
		if err = d.finalizeInto(x.keys, depth); err == nil {
			err = d.finalizeInto(x.vals, depth)
		}
		return x, err
	case *Exception:
		d.remember(shared, v, x)
		if err = d.finalizeInto(x.Args, depth); err == nil && x.State != nil {
			_, err = d.finalize(x.State, depth+1)
		}
		return x, err
	case *Token:
		if d.tokens[x] {
			return nil, malformed("a Token without its state")
		}
		d.remember(shared, v, x)
		x.Address, err = d.finalize(x.Address, depth+1)
		return x, err
	case global:
		return nil, &GlobalError{Module: x.module, Name: x.name, Reason: "a class is not a value"}
	}
	return v, nil
}

// remember records a shared container's public value before its items
// are finalized, so a cycle ends there.
func (d *decoder) remember(shared bool, v, out any) {
	if shared {
		d.seen[v] = out
	}
}

func (d *decoder) finalizeInto(out []any, depth int) error {
	for i, it := range out {
		v, err := d.finalize(it, depth+1)
		if err != nil {
			return err
		}
		out[i] = v
	}
	return nil
}
