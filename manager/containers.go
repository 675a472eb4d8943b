// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// The built-in containers live in the server as Go values guarded by a
// mutex. Every stored Value is immutable once stored (it is replaced, never
// changed in place), so responses may marshal it after the lock is gone.

func init() {
	register(&typeInfo{name: "dict", create: newDictObj, methods: dictMethods})
	register(&typeInfo{name: "list", create: newListObj, methods: listMethods})
	register(&typeInfo{name: "Namespace", create: newNamespaceObj, methods: nsMethods})
	register(&typeInfo{name: "Value", create: newValueObj, methods: valueMethods})
	register(&typeInfo{name: "Array", create: newArrayObj, methods: arrayMethods})
}

// ---------------------------------------------------------------- dict

// dictObj is an insertion-ordered map, like a Python dict.
type dictObj struct {
	mu   sync.Mutex
	idx  map[key]int
	keys []*pb.Value // nil at a deleted slot
	vals []*pb.Value
}

func newDictObj(cc *callCtx, args []*pb.Value) (any, error) {
	d := &dictObj{idx: map[key]int{}}
	if len(args) > 1 {
		return nil, errorf(ErrBadArgs, "dict takes at most one argument (a map)")
	}
	if len(args) == 1 && !isNull(args[0]) {
		if _, err := d.update(cc, args[0]); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (d *dictObj) get(k key) (int, bool) { i, ok := d.idx[k]; return i, ok }

// put stores v at k and returns the previous value (nil if none). d.mu held.
func (d *dictObj) put(k key, kv, v *pb.Value) *pb.Value {
	if i, ok := d.idx[k]; ok {
		old := d.vals[i]
		d.vals[i] = v
		return old
	}
	d.idx[k] = len(d.keys)
	d.keys = append(d.keys, kv)
	d.vals = append(d.vals, v)
	return nil
}

// del removes k and returns its value. d.mu held.
func (d *dictObj) del(k key) (*pb.Value, bool) {
	i, ok := d.idx[k]
	if !ok {
		return nil, false
	}
	v := d.vals[i]
	delete(d.idx, k)
	d.keys[i], d.vals[i] = nil, nil
	if len(d.keys) > 32 && len(d.idx) < len(d.keys)/2 {
		d.compact()
	}
	return v, true
}

func (d *dictObj) compact() {
	keys := make([]*pb.Value, 0, len(d.idx))
	vals := make([]*pb.Value, 0, len(d.idx))
	for i, k := range d.keys {
		if k == nil {
			continue
		}
		kk, _ := keyOf(k)
		d.idx[kk] = len(keys)
		keys = append(keys, k)
		vals = append(vals, d.vals[i])
	}
	d.keys, d.vals = keys, vals
}

func (d *dictObj) update(cc *callCtx, m *pb.Value) (*pb.Value, error) {
	mv, ok := m.GetKind().(*pb.Value_Map)
	if !ok {
		return nil, errorf(ErrBadArgs, "update takes a map, not %s", kindName(m))
	}
	if err := cc.s.holdValue(m); err != nil {
		return nil, err
	}
	var olds []*pb.Value
	d.mu.Lock()
	for _, e := range mv.Map.GetEntries() {
		k, _ := keyOf(e.GetKey()) // checked by checkValue
		if old := d.put(k, e.GetKey(), orNull(e.GetValue())); old != nil {
			olds = append(olds, old)
		}
	}
	d.mu.Unlock()
	cc.s.dropValue(olds...)
	return nil, nil
}

func orNull(v *pb.Value) *pb.Value {
	if v == nil {
		return nullValue
	}
	return v
}

func (d *dictObj) free() []*pb.Value {
	d.mu.Lock()
	defer d.mu.Unlock()
	vals := d.vals
	d.idx, d.keys, d.vals = map[key]int{}, nil, nil
	return vals
}

func (d *dictObj) getValue(cc *callCtx) (*pb.Value, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	entries := make([]*pb.Entry, 0, len(d.idx))
	for i, k := range d.keys {
		if k != nil {
			entries = append(entries, &pb.Entry{Key: k, Value: d.vals[i]})
		}
	}
	return cc.ret(&pb.Value{Kind: &pb.Value_Map{Map: &pb.Map{Entries: entries}}})
}

func keyArg(a *pb.Value) (key, error) {
	k, err := keyOf(a)
	if err != nil {
		return key{}, err
	}
	return k, nil
}

var dictMethods = methods(
	mk("Get", 1, func(cc *callCtx, d *dictObj, a []*pb.Value) (*pb.Value, error) {
		k, err := keyArg(a[0])
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		i, ok := d.get(k)
		if !ok {
			return nil, errorf(ErrKeyNotFound, "%s", repr(a[0]))
		}
		return cc.ret(d.vals[i])
	}),
	mk("GetOr", 2, func(cc *callCtx, d *dictObj, a []*pb.Value) (*pb.Value, error) {
		k, err := keyArg(a[0])
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if i, ok := d.get(k); ok {
			return cc.ret(d.vals[i])
		}
		return cc.ret(a[1])
	}),
	mk("Set", 2, func(cc *callCtx, d *dictObj, a []*pb.Value) (*pb.Value, error) {
		k, err := keyArg(a[0])
		if err != nil {
			return nil, err
		}
		if err := cc.s.holdValue(a[1]); err != nil {
			return nil, err
		}
		d.mu.Lock()
		old := d.put(k, a[0], a[1])
		d.mu.Unlock()
		if old != nil {
			cc.s.dropValue(old)
		}
		return nil, nil
	}),
	mk("SetDefault", 2, func(cc *callCtx, d *dictObj, a []*pb.Value) (*pb.Value, error) {
		k, err := keyArg(a[0])
		if err != nil {
			return nil, err
		}
		if err := cc.s.holdValue(a[1]); err != nil {
			return nil, err
		}
		d.mu.Lock()
		if i, ok := d.get(k); ok {
			v, err := cc.ret(d.vals[i])
			d.mu.Unlock()
			cc.s.dropValue(a[1])
			return v, err
		}
		d.put(k, a[0], a[1])
		v, err := cc.ret(a[1])
		d.mu.Unlock()
		return v, err
	}),
	mk("Delete", 1, func(cc *callCtx, d *dictObj, a []*pb.Value) (*pb.Value, error) {
		k, err := keyArg(a[0])
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		old, ok := d.del(k)
		d.mu.Unlock()
		if !ok {
			return nil, errorf(ErrKeyNotFound, "%s", repr(a[0]))
		}
		cc.s.dropValue(old)
		return nil, nil
	}),
	mk("Pop", 1, func(cc *callCtx, d *dictObj, a []*pb.Value) (*pb.Value, error) {
		k, err := keyArg(a[0])
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		old, ok := d.del(k)
		if !ok {
			d.mu.Unlock()
			return nil, errorf(ErrKeyNotFound, "%s", repr(a[0]))
		}
		v, err := cc.ret(old)
		d.mu.Unlock()
		cc.s.dropValue(old)
		return v, err
	}),
	mk("Contains", 1, func(cc *callCtx, d *dictObj, a []*pb.Value) (*pb.Value, error) {
		k, err := keyArg(a[0])
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		_, ok := d.get(k)
		d.mu.Unlock()
		return boolValue(ok), nil
	}),
	mk("Len", 0, func(cc *callCtx, d *dictObj, a []*pb.Value) (*pb.Value, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return intValue(int64(len(d.idx))), nil
	}),
	mk("Keys", 0, func(cc *callCtx, d *dictObj, a []*pb.Value) (*pb.Value, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		out := make([]*pb.Value, 0, len(d.idx))
		for _, k := range d.keys {
			if k != nil {
				out = append(out, k)
			}
		}
		return listValue(out), nil
	}),
	mk("Values", 0, func(cc *callCtx, d *dictObj, a []*pb.Value) (*pb.Value, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		out := make([]*pb.Value, 0, len(d.idx))
		for i, k := range d.keys {
			if k != nil {
				out = append(out, d.vals[i])
			}
		}
		return cc.ret(listValue(out))
	}),
	mk("Items", 0, func(cc *callCtx, d *dictObj, a []*pb.Value) (*pb.Value, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		out := make([]*pb.Value, 0, len(d.idx))
		for i, k := range d.keys {
			if k != nil {
				out = append(out, listValue([]*pb.Value{k, d.vals[i]}))
			}
		}
		return cc.ret(listValue(out))
	}),
	mk("Update", 1, func(cc *callCtx, d *dictObj, a []*pb.Value) (*pb.Value, error) {
		return d.update(cc, a[0])
	}),
	mk("Clear", 0, func(cc *callCtx, d *dictObj, a []*pb.Value) (*pb.Value, error) {
		cc.s.dropValue(d.free()...)
		return nil, nil
	}),
)

// ---------------------------------------------------------------- list

type listObj struct {
	mu    sync.Mutex
	items []*pb.Value
}

func newListObj(cc *callCtx, args []*pb.Value) (any, error) {
	if len(args) > 1 {
		return nil, errorf(ErrBadArgs, "list takes at most one argument (a list)")
	}
	l := &listObj{}
	if len(args) == 1 {
		items, err := argList(args[0], "list contents")
		if err != nil {
			return nil, err
		}
		if err := cc.s.holdValue(args[0]); err != nil {
			return nil, err
		}
		l.items = append([]*pb.Value(nil), items...)
	}
	return l, nil
}

func (l *listObj) free() []*pb.Value {
	l.mu.Lock()
	defer l.mu.Unlock()
	items := l.items
	l.items = nil
	return items
}

func (l *listObj) getValue(cc *callCtx) (*pb.Value, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return cc.ret(listValue(append([]*pb.Value(nil), l.items...)))
}

// index resolves a Python index (negative counts from the end).
func index(a *pb.Value, n int) (int, error) {
	i, err := argInt(a, "index")
	if err != nil {
		return 0, err
	}
	if i < 0 {
		i += int64(n)
	}
	if i < 0 || i >= int64(n) {
		return 0, errorf(ErrIndexOutOfRange, "index %d of a length %d sequence", i, n)
	}
	return int(i), nil
}

// sliceBounds resolves Python slice bounds lo:hi (null = open).
func sliceBounds(lo, hi *pb.Value, n int) (int, int, error) {
	bound := func(a *pb.Value, def int) (int, error) {
		if isNull(a) {
			return def, nil
		}
		i, err := argInt(a, "slice bound")
		if err != nil {
			return 0, err
		}
		if i < 0 {
			i += int64(n)
		}
		return int(max(0, min(i, int64(n)))), nil
	}
	l, err := bound(lo, 0)
	if err != nil {
		return 0, 0, err
	}
	h, err := bound(hi, n)
	if err != nil {
		return 0, 0, err
	}
	return l, max(l, h), nil
}

func findValue(items []*pb.Value, v *pb.Value) int {
	for i, it := range items {
		if proto.Equal(it, v) {
			return i
		}
	}
	return -1
}

var listMethods = methods(
	mk("Append", 1, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		if err := cc.s.holdValue(a[0]); err != nil {
			return nil, err
		}
		l.mu.Lock()
		l.items = append(l.items, a[0])
		l.mu.Unlock()
		return nil, nil
	}),
	mk("Extend", 1, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		items, err := argList(a[0], "Extend's argument")
		if err != nil {
			return nil, err
		}
		if err := cc.s.holdValue(a[0]); err != nil {
			return nil, err
		}
		l.mu.Lock()
		l.items = append(l.items, items...)
		l.mu.Unlock()
		return nil, nil
	}),
	mk("Get", 1, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		i, err := index(a[0], len(l.items))
		if err != nil {
			return nil, err
		}
		return cc.ret(l.items[i])
	}),
	mk("Set", 2, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		if err := cc.s.holdValue(a[1]); err != nil {
			return nil, err
		}
		l.mu.Lock()
		i, err := index(a[0], len(l.items))
		if err != nil {
			l.mu.Unlock()
			cc.s.dropValue(a[1])
			return nil, err
		}
		old := l.items[i]
		l.items[i] = a[1]
		l.mu.Unlock()
		cc.s.dropValue(old)
		return nil, nil
	}),
	mk("Len", 0, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		return intValue(int64(len(l.items))), nil
	}),
	opt(mk("Pop", 1, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		l.mu.Lock()
		at := intValue(-1)
		if len(a) > 0 {
			at = a[0]
		}
		i, err := index(at, len(l.items))
		if err != nil {
			l.mu.Unlock()
			return nil, err
		}
		v := l.items[i]
		l.items = append(l.items[:i], l.items[i+1:]...)
		out, err := cc.ret(v)
		l.mu.Unlock()
		cc.s.dropValue(v)
		return out, err
	}), 1),
	mk("Insert", 2, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		i, err := argInt(a[0], "index")
		if err != nil {
			return nil, err
		}
		if err := cc.s.holdValue(a[1]); err != nil {
			return nil, err
		}
		l.mu.Lock()
		n := int64(len(l.items))
		if i < 0 {
			i += n
		}
		i = max(0, min(i, n))
		l.items = append(l.items, nil)
		copy(l.items[i+1:], l.items[i:])
		l.items[i] = a[1]
		l.mu.Unlock()
		return nil, nil
	}),
	mk("Remove", 1, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		l.mu.Lock()
		i := findValue(l.items, a[0])
		if i < 0 {
			l.mu.Unlock()
			return nil, errorf(ErrNotFound, "%s not in list", repr(a[0]))
		}
		v := l.items[i]
		l.items = append(l.items[:i], l.items[i+1:]...)
		l.mu.Unlock()
		cc.s.dropValue(v)
		return nil, nil
	}),
	mk("Index", 1, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		i := findValue(l.items, a[0])
		if i < 0 {
			return nil, errorf(ErrNotFound, "%s not in list", repr(a[0]))
		}
		return intValue(int64(i)), nil
	}),
	mk("Count", 1, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		n := 0
		for _, it := range l.items {
			if proto.Equal(it, a[0]) {
				n++
			}
		}
		return intValue(int64(n)), nil
	}),
	mk("Contains", 1, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		return boolValue(findValue(l.items, a[0]) >= 0), nil
	}),
	mk("Slice", 2, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		lo, hi, err := sliceBounds(a[0], a[1], len(l.items))
		if err != nil {
			return nil, err
		}
		return cc.ret(listValue(append([]*pb.Value(nil), l.items[lo:hi]...)))
	}),
	mk("Repeat", 1, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		n, err := argInt(a[0], "count")
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if n <= 0 {
			old := l.items
			l.items = nil
			l.mu.Unlock()
			cc.s.dropValue(old...)
			return nil, nil
		}
		if int64(len(l.items))*n > 1<<24 {
			l.mu.Unlock()
			return nil, errorf(ErrBadArgs, "list would exceed %d items", 1<<24)
		}
		base := l.items
		extra := listValue(nil)
		for range n - 1 {
			extra.GetList().Items = append(extra.GetList().Items, base...)
		}
		l.mu.Unlock()
		// The copies are new references held by the list.
		if err := cc.s.holdValue(extra); err != nil {
			return nil, err
		}
		l.mu.Lock()
		l.items = append(l.items, extra.GetList().Items...)
		l.mu.Unlock()
		return nil, nil
	}),
	mk("Reverse", 0, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i, j := 0, len(l.items)-1; i < j; i, j = i+1, j-1 {
			l.items[i], l.items[j] = l.items[j], l.items[i]
		}
		return nil, nil
	}),
	mk("Clear", 0, func(cc *callCtx, l *listObj, a []*pb.Value) (*pb.Value, error) {
		cc.s.dropValue(l.free()...)
		return nil, nil
	}),
)

// ---------------------------------------------------------------- Namespace

type nsObj struct {
	mu    sync.Mutex
	names []string
	vals  map[string]*pb.Value
}

func newNamespaceObj(cc *callCtx, args []*pb.Value) (any, error) {
	n := &nsObj{vals: map[string]*pb.Value{}}
	if len(args) > 1 {
		return nil, errorf(ErrBadArgs, "Namespace takes at most one argument (a map of attributes)")
	}
	if len(args) == 1 && !isNull(args[0]) {
		m, ok := args[0].GetKind().(*pb.Value_Map)
		if !ok {
			return nil, errorf(ErrBadArgs, "Namespace takes a map, not %s", kindName(args[0]))
		}
		for _, e := range m.Map.GetEntries() {
			if _, ok := e.GetKey().GetKind().(*pb.Value_String_); !ok {
				return nil, errorf(ErrBadArgs, "Namespace attribute names are strings")
			}
		}
		if err := cc.s.holdValue(args[0]); err != nil {
			return nil, err
		}
		for _, e := range m.Map.GetEntries() {
			n.set(e.GetKey().GetString_(), orNull(e.GetValue()))
		}
	}
	return n, nil
}

func (n *nsObj) set(name string, v *pb.Value) *pb.Value {
	old, ok := n.vals[name]
	if !ok {
		n.names = append(n.names, name)
	}
	n.vals[name] = v
	return old
}

func (n *nsObj) free() []*pb.Value {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*pb.Value, 0, len(n.vals))
	for _, v := range n.vals {
		out = append(out, v)
	}
	n.names, n.vals = nil, map[string]*pb.Value{}
	return out
}

func (n *nsObj) getValue(cc *callCtx) (*pb.Value, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	entries := make([]*pb.Entry, 0, len(n.names))
	for _, name := range n.names {
		entries = append(entries, &pb.Entry{Key: strValue(name), Value: n.vals[name]})
	}
	return cc.ret(&pb.Value{Kind: &pb.Value_Map{Map: &pb.Map{Entries: entries}}})
}

var nsMethods = methods(
	mk("Get", 1, func(cc *callCtx, n *nsObj, a []*pb.Value) (*pb.Value, error) {
		name, err := argString(a[0], "attribute name")
		if err != nil {
			return nil, err
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		v, ok := n.vals[name]
		if !ok {
			return nil, errorf(ErrKeyNotFound, "Namespace has no attribute %q", name)
		}
		return cc.ret(v)
	}),
	mk("Set", 2, func(cc *callCtx, n *nsObj, a []*pb.Value) (*pb.Value, error) {
		name, err := argString(a[0], "attribute name")
		if err != nil {
			return nil, err
		}
		if err := cc.s.holdValue(a[1]); err != nil {
			return nil, err
		}
		n.mu.Lock()
		old := n.set(name, a[1])
		n.mu.Unlock()
		if old != nil {
			cc.s.dropValue(old)
		}
		return nil, nil
	}),
	mk("Delete", 1, func(cc *callCtx, n *nsObj, a []*pb.Value) (*pb.Value, error) {
		name, err := argString(a[0], "attribute name")
		if err != nil {
			return nil, err
		}
		n.mu.Lock()
		old, ok := n.vals[name]
		if ok {
			delete(n.vals, name)
			for i, x := range n.names {
				if x == name {
					n.names = append(n.names[:i], n.names[i+1:]...)
					break
				}
			}
		}
		n.mu.Unlock()
		if !ok {
			return nil, errorf(ErrKeyNotFound, "Namespace has no attribute %q", name)
		}
		cc.s.dropValue(old)
		return nil, nil
	}),
	mk("Has", 1, func(cc *callCtx, n *nsObj, a []*pb.Value) (*pb.Value, error) {
		name, err := argString(a[0], "attribute name")
		if err != nil {
			return nil, err
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		_, ok := n.vals[name]
		return boolValue(ok), nil
	}),
	mk("Names", 0, func(cc *callCtx, n *nsObj, a []*pb.Value) (*pb.Value, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		out := make([]*pb.Value, len(n.names))
		for i, name := range n.names {
			out[i] = strValue(name)
		}
		return listValue(out), nil
	}),
	mk("String", 0, func(cc *callCtx, n *nsObj, a []*pb.Value) (*pb.Value, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		var b strings.Builder
		b.WriteString("Namespace(")
		for i, name := range n.names {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(name + "=" + repr(n.vals[name]))
		}
		b.WriteString(")")
		return strValue(b.String()), nil
	}),
)

// ---------------------------------------------------------------- Value

type valueObj struct {
	mu sync.Mutex
	v  *pb.Value
}

func newValueObj(cc *callCtx, args []*pb.Value) (any, error) {
	if len(args) != 1 {
		return nil, errorf(ErrBadArgs, "Value takes one argument (its initial value)")
	}
	if err := cc.s.holdValue(args[0]); err != nil {
		return nil, err
	}
	return &valueObj{v: args[0]}, nil
}

func (o *valueObj) free() []*pb.Value {
	o.mu.Lock()
	defer o.mu.Unlock()
	v := o.v
	o.v = nullValue
	return []*pb.Value{v}
}

func (o *valueObj) getValue(cc *callCtx) (*pb.Value, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return cc.ret(o.v)
}

var valueMethods = methods(
	mk("Get", 0, func(cc *callCtx, o *valueObj, a []*pb.Value) (*pb.Value, error) {
		return o.getValue(cc)
	}),
	mk("Set", 1, func(cc *callCtx, o *valueObj, a []*pb.Value) (*pb.Value, error) {
		if err := cc.s.holdValue(a[0]); err != nil {
			return nil, err
		}
		o.mu.Lock()
		old := o.v
		o.v = a[0]
		o.mu.Unlock()
		cc.s.dropValue(old)
		return nil, nil
	}),
	// Add adds an int or double delta to a numeric value atomically (in
	// the server) and returns the new value: a shared counter without a
	// separate lock.
	mk("Add", 1, func(cc *callCtx, o *valueObj, a []*pb.Value) (*pb.Value, error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		nv, err := addValues(o.v, a[0])
		if err != nil {
			return nil, err
		}
		o.v = nv
		return nv, nil
	}),
)

func addValues(x, d *pb.Value) (*pb.Value, error) {
	switch xv := x.GetKind().(type) {
	case *pb.Value_Int:
		switch dv := d.GetKind().(type) {
		case *pb.Value_Int:
			if (dv.Int > 0 && xv.Int > math.MaxInt64-dv.Int) || (dv.Int < 0 && xv.Int < math.MinInt64-dv.Int) {
				return nil, errorf(ErrTypeError, "integer overflow")
			}
			return intValue(xv.Int + dv.Int), nil
		case *pb.Value_Double:
			return doubleValue(float64(xv.Int) + dv.Double), nil
		}
	case *pb.Value_Double:
		switch dv := d.GetKind().(type) {
		case *pb.Value_Int:
			return doubleValue(xv.Double + float64(dv.Int)), nil
		case *pb.Value_Double:
			return doubleValue(xv.Double + dv.Double), nil
		}
	}
	return nil, errorf(ErrTypeError, "cannot add %s to %s", kindName(d), kindName(x))
}

// ---------------------------------------------------------------- Array

// arrayObj is a fixed-length sequence (CPython's manager Array): its
// length never changes and every element keeps the kind it started with.
type arrayObj struct {
	mu    sync.Mutex
	items []*pb.Value
}

func newArrayObj(cc *callCtx, args []*pb.Value) (any, error) {
	if len(args) != 1 {
		return nil, errorf(ErrBadArgs, "Array takes one argument (its initial contents)")
	}
	items, err := argList(args[0], "Array contents")
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		switch it.GetKind().(type) {
		case *pb.Value_List, *pb.Value_Map, *pb.Value_Proxy:
			return nil, errorf(ErrBadArgs, "Array elements are scalars, not %s", kindName(it))
		}
	}
	return &arrayObj{items: append([]*pb.Value(nil), items...)}, nil
}

func (o *arrayObj) getValue(cc *callCtx) (*pb.Value, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return listValue(append([]*pb.Value(nil), o.items...)), nil
}

var arrayMethods = methods(
	mk("Get", 1, func(cc *callCtx, o *arrayObj, a []*pb.Value) (*pb.Value, error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		i, err := index(a[0], len(o.items))
		if err != nil {
			return nil, err
		}
		return o.items[i], nil
	}),
	mk("Set", 2, func(cc *callCtx, o *arrayObj, a []*pb.Value) (*pb.Value, error) {
		switch a[1].GetKind().(type) {
		case *pb.Value_List, *pb.Value_Map, *pb.Value_Proxy:
			return nil, errorf(ErrBadArgs, "Array elements are scalars, not %s", kindName(a[1]))
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		i, err := index(a[0], len(o.items))
		if err != nil {
			return nil, err
		}
		o.items[i] = a[1]
		return nil, nil
	}),
	mk("Len", 0, func(cc *callCtx, o *arrayObj, a []*pb.Value) (*pb.Value, error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		return intValue(int64(len(o.items))), nil
	}),
	mk("Slice", 2, func(cc *callCtx, o *arrayObj, a []*pb.Value) (*pb.Value, error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		lo, hi, err := sliceBounds(a[0], a[1], len(o.items))
		if err != nil {
			return nil, err
		}
		return listValue(append([]*pb.Value(nil), o.items[lo:hi]...)), nil
	}),
)

// repr formats a Value the way Python's repr would, for messages and
// Namespace's String.
func repr(v *pb.Value) string {
	switch x := v.GetKind().(type) {
	case nil, *pb.Value_Null:
		return "None"
	case *pb.Value_Bool:
		if x.Bool {
			return "True"
		}
		return "False"
	case *pb.Value_Int:
		return strconv.FormatInt(x.Int, 10)
	case *pb.Value_Uint:
		return strconv.FormatUint(x.Uint, 10)
	case *pb.Value_Double:
		return strconv.FormatFloat(x.Double, 'g', -1, 64)
	case *pb.Value_String_:
		return "'" + strings.ReplaceAll(truncate(x.String_), "'", `\'`) + "'"
	case *pb.Value_Bytes:
		return fmt.Sprintf("b%q", truncate(string(x.Bytes)))
	case *pb.Value_List:
		return fmt.Sprintf("[list of %d]", len(x.List.GetItems()))
	case *pb.Value_Map:
		return fmt.Sprintf("{map of %d}", len(x.Map.GetEntries()))
	case *pb.Value_Proxy:
		return fmt.Sprintf("<%s proxy %d>", x.Proxy.GetTypeid(), x.Proxy.GetId())
	}
	return "?"
}
