// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/multiproc/multiproc/ipc/pickle"
	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// SyncManager's typeids as CPython clients call them, on the server's
// own objects: each Python method maps to the Go methods of the object
// (containers.go, syncobjs.go) with CPython's argument names and the
// exceptions CPython raises.

type pyMethod func(pc *pyCallCtx) (any, error)

type pyType struct {
	goType  string // the Go typeid, when it differs
	create  func(args pickle.Tuple, kwds *pickle.Dict) ([]*pb.Value, error)
	methods map[string]pyMethod
	exposed []string // what create replies (CPython's proxy type's _exposed_)
}

var pyTypes map[string]*pyType

// pyCustom serves registered Go types: positional arguments, Go method
// names.
var pyCustom = &pyType{}

func init() {
	acq := &pyType{methods: map[string]pyMethod{"acquire": pyAcquire, "release": pyRelease},
		exposed: []string{"acquire", "release"}, create: pyNoArgs}
	sem := &pyType{methods: acq.methods, exposed: acq.exposed, create: pySemArgs}
	queue := &pyType{create: pyQueueArgs, methods: map[string]pyMethod{
		"put": pyQueuePut, "put_nowait": pyQueuePutNowait, "get": pyQueueGet, "get_nowait": pyQueueGetNowait,
		"qsize": pyPlain("Qsize"), "empty": pyPlain("Empty"), "full": pyPlain("Full"),
	}}
	queue.exposed = sortedKeys(queue.methods)
	jqueue := &pyType{create: pyQueueArgs, methods: map[string]pyMethod{
		"task_done": pyPlain("TaskDone"),
		"join":      func(pc *pyCallCtx) (any, error) { return pyResult(pc.blockingCall(nil, "Join")) },
	}}
	for k, v := range queue.methods {
		jqueue.methods[k] = v
	}
	jqueue.exposed = sortedKeys(jqueue.methods)
	pyTypes = map[string]*pyType{
		"dict":             {create: pyDictArgs, methods: pyDictMethods, exposed: pyDictExposed},
		"list":             {create: pyListArgs, methods: pyListMethods, exposed: sortedKeys(pyListMethods)},
		"Namespace":        {create: pyNamespaceArgs, methods: pyNamespaceMethods, exposed: []string{"__getattribute__", "__setattr__", "__delattr__"}},
		"Value":            {create: pyValueArgs, methods: pyValueMethods, exposed: []string{"get", "set"}},
		"Queue":            queue,
		"JoinableQueue":    jqueue,
		"Lock":             acq,
		"RLock":            acq,
		"Semaphore":        sem,
		"BoundedSemaphore": sem,
		"Event": {create: pyNoArgs, exposed: []string{"is_set", "set", "clear", "wait"}, methods: map[string]pyMethod{
			"is_set": pyPlain("IsSet"), "set": pyPlain("Set"), "clear": pyPlain("Clear"), "wait": pyEventWait}},
		"Barrier": {create: pyBarrierArgs, exposed: []string{"__getattribute__", "wait", "abort", "reset"},
			methods: map[string]pyMethod{"wait": pyBarrierWait, "abort": pyPlain("Abort"), "reset": pyPlain("Reset"),
				"__getattribute__": pyBarrierAttr}},
		"Condition": {create: pyConditionArgs, exposed: []string{"acquire", "release", "wait", "notify", "notify_all"},
			methods: map[string]pyMethod{"acquire": pyAcquire, "release": pyRelease, "wait": pyCondWait,
				"notify": pyCondNotify, "notify_all": pyPlain("NotifyAll")}},
	}
}

// pyIterator serves pyIteratorType's objects.
var pyIterator = &pyType{exposed: []string{"__next__"}, methods: map[string]pyMethod{"__next__": pyIterNext}}

// pyTypeOf returns how CPython clients call objects of type ti: a
// builtin's table, the iterator's, or pyCustom for a registered Go type
// (whatever its name: a Go type may be called "Iterator" or "dict"'s
// neighbour without borrowing their tables). nil: not callable.
func pyTypeOf(ti *typeInfo) *pyType {
	switch {
	case ti == pyIteratorType:
		return pyIterator
	case ti.custom:
		return pyCustom
	}
	return pyTypes[ti.name]
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// pyExposed is the tuple of method names a proxy of e may call.
func pyExposed(e *entry) pickle.Tuple {
	var names []string
	if pt := pyTypeOf(e.ti); pt == pyCustom {
		names = sortedKeys(e.ti.methods)
	} else if pt != nil {
		names = pt.exposed
	}
	out := make(pickle.Tuple, len(names))
	for i, n := range names {
		out[i] = n
	}
	return out
}

func pyTypeid(e *entry) string { return e.ti.name }

// pyResult converts a Go method's result.
func pyResult(v *pb.Value, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return fromPB(v)
}

// pyPlain calls a Go method with the positional arguments converted.
func pyPlain(goName string) pyMethod {
	return func(pc *pyCallCtx) (any, error) {
		if pc.req.kwds.Len() > 0 {
			return nil, pyExc("TypeError", pc.req.method+"() takes no keyword arguments")
		}
		args := make([]*pb.Value, len(pc.req.args))
		for i, a := range pc.req.args {
			v, err := toPB(a)
			if err != nil {
				return nil, err
			}
			args[i] = v
		}
		return pyResult(pc.goCall(goName, args...))
	}
}

func pyCustomMethod(m *method) pyMethod {
	return func(pc *pyCallCtx) (any, error) {
		if m.blocking {
			args, err := pyArgValues(pc.req.args)
			if err != nil {
				return nil, err
			}
			return pyResult(pc.blockingCall(nil, m.name, args...))
		}
		return pyPlain(m.name)(pc)
	}
}

func pyArgValues(args pickle.Tuple) ([]*pb.Value, error) {
	out := make([]*pb.Value, len(args))
	for i, a := range args {
		v, err := toPB(a)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func pyCustomArgs(args pickle.Tuple, kwds *pickle.Dict) ([]*pb.Value, error) {
	if kwds.Len() > 0 {
		return nil, pyExc("TypeError", "a Go type takes no keyword arguments")
	}
	return pyArgValues(args)
}

// pyGetValue is '#GETVALUE' (proxy._getvalue()): a copy of the object.
func pyGetValue(pc *pyCallCtx) (any, error) {
	gv, ok := pc.e.obj.(getValuer)
	if !ok {
		return nil, errorf(ErrUnknownMethod, "%s has no value to copy", pc.e.ti.name)
	}
	return pyResult(gv.getValue(pc.cc))
}

// pyStr is str() and repr() of the object.
func pyStr(pc *pyCallCtx) (any, error) {
	if gv, ok := pc.e.obj.(getValuer); ok {
		if v, err := pyResult(gv.getValue(pc.cc)); err == nil {
			return pickle.Repr(v), nil
		}
	}
	return fmt.Sprintf("<%s object %d>", pc.e.ti.name, pc.e.id), nil
}

// ---------------------------------------------------------------- create

func pyNoArgs(args pickle.Tuple, kwds *pickle.Dict) ([]*pb.Value, error) {
	if len(args) > 0 || kwds.Len() > 0 {
		return nil, pyExc("TypeError", "takes no arguments")
	}
	return nil, nil
}

func pyDictArgs(args pickle.Tuple, kwds *pickle.Dict) ([]*pb.Value, error) {
	d := &pickle.Dict{}
	if len(args) > 1 {
		return nil, pyExc("TypeError", "dict expected at most 1 argument")
	}
	if len(args) == 1 {
		if err := pyMergeInto(d, args[0]); err != nil {
			return nil, err
		}
	}
	for k, v := range kwds.All() {
		d.Set(k, v)
	}
	m, err := toPB(d)
	if err != nil {
		return nil, err
	}
	return []*pb.Value{m}, nil
}

// pyMergeInto adds a dict, or a sequence of pairs, to d (dict.update).
func pyMergeInto(d *pickle.Dict, src any) error {
	switch x := src.(type) {
	case *pickle.Dict:
		for k, v := range x.All() {
			d.Set(k, v)
		}
		return nil
	case []any, pickle.Tuple:
		var items []any
		if l, ok := x.([]any); ok {
			items = l
		} else {
			items = x.(pickle.Tuple)
		}
		for _, it := range items {
			var pair []any
			switch p := it.(type) {
			case pickle.Tuple:
				pair = p
			case []any:
				pair = p
			}
			if len(pair) != 2 {
				return pyExc("TypeError", "dictionary update sequence element is not a pair")
			}
			if err := d.Set(pair[0], pair[1]); err != nil {
				return pyExc("TypeError", err.Error())
			}
		}
		return nil
	}
	return pyExc("TypeError", "cannot convert "+pyTypeName(src)+" to a dict")
}

func pyListArgs(args pickle.Tuple, kwds *pickle.Dict) ([]*pb.Value, error) {
	if len(args) > 1 || kwds.Len() > 0 {
		return nil, pyExc("TypeError", "list expected at most 1 argument")
	}
	if len(args) == 0 {
		return nil, nil
	}
	v, err := toPB(args[0])
	if err != nil {
		return nil, err
	}
	if _, ok := v.GetKind().(*pb.Value_List); !ok {
		return nil, pyExc("TypeError", "list() takes a list, tuple or set here")
	}
	return []*pb.Value{v}, nil
}

func pyNamespaceArgs(args pickle.Tuple, kwds *pickle.Dict) ([]*pb.Value, error) {
	if len(args) > 0 {
		return nil, pyExc("TypeError", "Namespace takes keyword arguments only")
	}
	m, err := toPB(orEmpty(kwds))
	if err != nil {
		return nil, err
	}
	return []*pb.Value{m}, nil
}

func orEmpty(d *pickle.Dict) *pickle.Dict {
	if d == nil {
		return &pickle.Dict{}
	}
	return d
}

func pyValueArgs(args pickle.Tuple, kwds *pickle.Dict) ([]*pb.Value, error) {
	// Value(typecode, value, lock=True): the typecode is not kept.
	a, err := bindPy("Value", args, kwds, 2, "typecode", "value", "lock")
	if err != nil {
		return nil, err
	}
	v, err := toPB(a[1])
	if err != nil {
		return nil, err
	}
	return []*pb.Value{v}, nil
}

func pyQueueArgs(args pickle.Tuple, kwds *pickle.Dict) ([]*pb.Value, error) {
	a, err := bindPy("Queue", args, kwds, 0, "maxsize")
	if err != nil {
		return nil, err
	}
	n, ok := or(a[0], int64(0)).(int64)
	if !ok {
		return nil, pyExc("TypeError", "maxsize must be an int")
	}
	return []*pb.Value{intValue(n)}, nil
}

func pySemArgs(args pickle.Tuple, kwds *pickle.Dict) ([]*pb.Value, error) {
	a, err := bindPy("Semaphore", args, kwds, 0, "value")
	if err != nil {
		return nil, err
	}
	n, ok := or(a[0], int64(1)).(int64)
	if !ok {
		return nil, pyExc("TypeError", "value must be an int")
	}
	if n < 0 {
		return nil, pyExc("ValueError", "semaphore initial value must be >= 0")
	}
	return []*pb.Value{intValue(n)}, nil
}

func pyConditionArgs(args pickle.Tuple, kwds *pickle.Dict) ([]*pb.Value, error) {
	a, err := bindPy("Condition", args, kwds, 0, "lock")
	if err != nil {
		return nil, err
	}
	if v := or(a[0], nil); v != nil {
		return nil, pyExc("TypeError", "a Go manager's Condition takes no lock from a Python client (it makes its own RLock)")
	}
	return nil, nil
}

// ---------------------------------------------------------------- dict

var pyDictExposed = []string{"__contains__", "__delitem__", "__getitem__", "__iter__", "__len__",
	"__setitem__", "clear", "copy", "get", "items", "keys", "pop", "popitem", "setdefault", "update", "values"}

// pyArg1 converts the call's single positional argument k.
func pyKey(pc *pyCallCtx, v any) (*pb.Value, error) {
	k, err := toPB(v)
	if err != nil {
		return nil, err
	}
	if _, err := keyOf(k); err != nil {
		return nil, pyExc("TypeError", fmt.Sprintf("unhashable type: '%s'", pyTypeName(v)))
	}
	return k, nil
}

// keyErr raises KeyError(key) for a missing key.
func keyErr(err error, key any) error {
	if errors.Is(err, ErrKeyNotFound) {
		return pyExc("KeyError", key)
	}
	return err
}

var pyDictMethods = map[string]pyMethod{
	"__getitem__": func(pc *pyCallCtx) (any, error) {
		a, err := pc.bind(1, "key")
		if err != nil {
			return nil, err
		}
		k, err := pyKey(pc, a[0])
		if err != nil {
			return nil, err
		}
		v, err := pyResult(pc.goCall("Get", k))
		return v, keyErr(err, a[0])
	},
	"get": keyDefault("GetOr"),
	"__setitem__": func(pc *pyCallCtx) (any, error) {
		a, err := pc.bind(2, "key", "value")
		if err != nil {
			return nil, err
		}
		k, err := pyKey(pc, a[0])
		if err != nil {
			return nil, err
		}
		v, err := toPB(a[1])
		if err != nil {
			return nil, err
		}
		return pyResult(pc.goCall("Set", k, v))
	},
	"__delitem__": func(pc *pyCallCtx) (any, error) {
		a, err := pc.bind(1, "key")
		if err != nil {
			return nil, err
		}
		k, err := pyKey(pc, a[0])
		if err != nil {
			return nil, err
		}
		_, err = pc.goCall("Delete", k)
		return nil, keyErr(err, a[0])
	},
	"pop": func(pc *pyCallCtx) (any, error) {
		a, err := pc.bind(1, "key", "default")
		if err != nil {
			return nil, err
		}
		k, err := pyKey(pc, a[0])
		if err != nil {
			return nil, err
		}
		v, err := pyResult(pc.goCall("Pop", k))
		if errors.Is(err, ErrKeyNotFound) && !absent(a[1]) {
			return a[1], nil
		}
		return v, keyErr(err, a[0])
	},
	"popitem": func(pc *pyCallCtx) (any, error) {
		// The last key, then its pop: a concurrent writer may take the
		// key in between, and then the next last key is tried.
		for range 64 {
			keys, err := pc.goCall("Keys")
			if err != nil {
				return nil, err
			}
			items := keys.GetList().GetItems()
			if len(items) == 0 {
				return nil, pyExc("KeyError", "popitem(): dictionary is empty")
			}
			k := items[len(items)-1]
			v, err := pc.goCall("Pop", k)
			if errors.Is(err, ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			pk, _ := fromPB(k)
			pv, err := fromPB(v)
			return pickle.Tuple{pk, pv}, err
		}
		return nil, pyExc("RuntimeError", "popitem(): the dict kept changing")
	},
	"setdefault": keyDefault("SetDefault"),
	"__contains__": func(pc *pyCallCtx) (any, error) {
		a, err := pc.bind(1, "key")
		if err != nil {
			return nil, err
		}
		k, err := toPB(a[0])
		if err != nil {
			return nil, err
		}
		if _, err := keyOf(k); err != nil {
			return nil, pyExc("TypeError", fmt.Sprintf("unhashable type: '%s'", pyTypeName(a[0])))
		}
		return pyResult(pc.goCall("Contains", k))
	},
	"__len__": pyPlain("Len"),
	"clear":   pyPlain("Clear"),
	"keys":    pyPlain("Keys"),
	"values":  pyPlain("Values"),
	"items": func(pc *pyCallCtx) (any, error) {
		v, err := pyResult(pc.goCall("Items"))
		if err != nil {
			return nil, err
		}
		items, _ := v.([]any)
		for i, it := range items {
			if p, ok := it.([]any); ok {
				items[i] = pickle.Tuple(p)
			}
		}
		return items, nil
	},
	"copy": pyGetValue,
	"update": func(pc *pyCallCtx) (any, error) {
		if len(pc.req.args) > 1 {
			return nil, pyExc("TypeError", "update expected at most 1 argument")
		}
		d := &pickle.Dict{}
		if len(pc.req.args) == 1 {
			if err := pyMergeInto(d, pc.req.args[0]); err != nil {
				return nil, err
			}
		}
		for k, v := range pc.req.kwds.All() {
			d.Set(k, v)
		}
		m, err := toPB(d)
		if err != nil {
			return nil, err
		}
		return pyResult(pc.goCall("Update", m))
	},
	"__iter__": func(pc *pyCallCtx) (any, error) {
		keys, err := pc.goCall("Keys")
		if err != nil {
			return nil, err
		}
		e, err := pc.cc.s.pyAdd(pyIteratorType, &pyIterObj{items: keys.GetList().GetItems()})
		if err != nil {
			return nil, err
		}
		return pyProxyResult{e}, nil
	},
}

// pyIteratorType is the iterator a dict's __iter__ returns (CPython's
// 'Iterator' typeid): a snapshot of the keys. Only CPython clients make
// one; it is not in the registry.
var pyIteratorType = &typeInfo{name: "Iterator", methods: map[string]*method{}}

type pyIterObj struct {
	mu    sync.Mutex
	items []*pb.Value
}

func pyIterNext(pc *pyCallCtx) (any, error) {
	it := pc.e.obj.(*pyIterObj)
	it.mu.Lock()
	defer it.mu.Unlock()
	if len(it.items) == 0 {
		return nil, pyExc("StopIteration")
	}
	v := it.items[0]
	it.items = it.items[1:]
	return fromPB(v)
}

// ---------------------------------------------------------------- list

func pyIndexArg(v any) (*pb.Value, error) {
	switch x := v.(type) {
	case int64:
		return intValue(x), nil
	case bool:
		return boolValue(x), nil
	}
	return nil, pyExc("TypeError", "list indices must be integers (a Go manager's list takes no slices)")
}

// bindIndex binds a list method's arguments (req required, the first one
// the index) and converts the index: the shared head of the list methods
// that take one.
func (pc *pyCallCtx) bindIndex(req int, names ...string) (*pb.Value, []any, error) {
	a, err := pc.bind(req, names...)
	if err != nil {
		return nil, nil, err
	}
	i, err := pyIndexArg(a[0])
	return i, a, err
}

func pyIndexErr(err error) error {
	if errors.Is(err, ErrIndexOutOfRange) {
		return pyExc("IndexError", "list index out of range")
	}
	return err
}

func pyValueArg(pc *pyCallCtx, n int, names ...string) ([]*pb.Value, error) {
	a, err := pc.bind(n, names...)
	if err != nil {
		return nil, err
	}
	out := make([]*pb.Value, 0, len(a))
	for _, x := range a {
		if absent(x) {
			break
		}
		v, err := toPB(x)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

var pyListMethods = map[string]pyMethod{
	"__getitem__": func(pc *pyCallCtx) (any, error) {
		i, _, err := pc.bindIndex(1, "index")
		if err != nil {
			return nil, err
		}
		v, err := pyResult(pc.goCall("Get", i))
		return v, pyIndexErr(err)
	},
	"__setitem__": func(pc *pyCallCtx) (any, error) {
		i, a, err := pc.bindIndex(2, "index", "value")
		if err != nil {
			return nil, err
		}
		v, err := toPB(a[1])
		if err != nil {
			return nil, err
		}
		_, err = pc.goCall("Set", i, v)
		return nil, pyIndexErr(err)
	},
	"__delitem__": func(pc *pyCallCtx) (any, error) {
		i, _, err := pc.bindIndex(1, "index")
		if err != nil {
			return nil, err
		}
		_, err = pc.goCall("Pop", i)
		return nil, pyIndexErr(err)
	},
	"pop": func(pc *pyCallCtx) (any, error) {
		a, err := pc.bind(0, "index")
		if err != nil {
			return nil, err
		}
		i, err := pyIndexArg(or(a[0], int64(-1)))
		if err != nil {
			return nil, err
		}
		v, err := pyResult(pc.goCall("Pop", i))
		if errors.Is(err, ErrIndexOutOfRange) {
			return nil, pyExc("IndexError", "pop from empty list or index out of range")
		}
		return v, err
	},
	"insert": func(pc *pyCallCtx) (any, error) {
		i, a, err := pc.bindIndex(2, "index", "object")
		if err != nil {
			return nil, err
		}
		v, err := toPB(a[1])
		if err != nil {
			return nil, err
		}
		return pyResult(pc.goCall("Insert", i, v))
	},
	"append": pyPlain("Append"),
	"extend": func(pc *pyCallCtx) (any, error) {
		a, err := pyValueArg(pc, 1, "iterable")
		if err != nil {
			return nil, err
		}
		if _, ok := a[0].GetKind().(*pb.Value_List); !ok {
			return nil, pyExc("TypeError", "extend takes a list, tuple or set here")
		}
		return pyResult(pc.goCall("Extend", a[0]))
	},
	"__len__":      pyPlain("Len"),
	"__contains__": pyPlain("Contains"),
	"count":        pyPlain("Count"),
	"reverse":      pyPlain("Reverse"),
	"index": func(pc *pyCallCtx) (any, error) {
		a, err := pyValueArg(pc, 1, "value")
		if err != nil {
			return nil, err
		}
		v, err := pyResult(pc.goCall("Index", a[0]))
		if errors.Is(err, ErrNotFound) {
			return nil, pyExc("ValueError", pickle.Repr(pc.req.args[0])+" is not in list")
		}
		return v, err
	},
	"remove": func(pc *pyCallCtx) (any, error) {
		a, err := pyValueArg(pc, 1, "value")
		if err != nil {
			return nil, err
		}
		_, err = pc.goCall("Remove", a[0])
		if errors.Is(err, ErrNotFound) {
			return nil, pyExc("ValueError", "list.remove(x): x not in list")
		}
		return nil, err
	},
	"__imul__": func(pc *pyCallCtx) (any, error) {
		a, err := pc.bind(1, "n")
		if err != nil {
			return nil, err
		}
		n, ok := a[0].(int64)
		if !ok {
			return nil, pyExc("TypeError", "can't multiply sequence by non-int")
		}
		return pyResult(pc.goCall("Repeat", intValue(n)))
	},
	"__mul__":  pyListMul,
	"__rmul__": pyListMul,
	"__add__": func(pc *pyCallCtx) (any, error) {
		a, err := pc.bind(1, "other")
		if err != nil {
			return nil, err
		}
		other, ok := a[0].([]any)
		if !ok {
			return nil, pyExc("TypeError", "can only concatenate list (not \""+pyTypeName(a[0])+"\") to list")
		}
		v, err := pyGetValue(pc)
		if err != nil {
			return nil, err
		}
		return append(v.([]any), other...), nil
	},
}

func pyListMul(pc *pyCallCtx) (any, error) {
	a, err := pc.bind(1, "n")
	if err != nil {
		return nil, err
	}
	n, ok := a[0].(int64)
	if !ok {
		return nil, pyExc("TypeError", "can't multiply sequence by non-int")
	}
	v, err := pyGetValue(pc)
	if err != nil {
		return nil, err
	}
	items := v.([]any)
	if n <= 0 {
		return []any{}, nil
	}
	if int64(len(items))*n > 1<<24 {
		return nil, pyExc("MemoryError")
	}
	out := make([]any, 0, int64(len(items))*n)
	for range n {
		out = append(out, items...)
	}
	return out, nil
}

// ---------------------------------------------------------------- Namespace and Value

func attrErr(err error, name any) error {
	if errors.Is(err, ErrKeyNotFound) {
		return pyExc("AttributeError", fmt.Sprintf("'Namespace' object has no attribute %s", pickle.Repr(name)))
	}
	return err
}

var pyNamespaceMethods = map[string]pyMethod{
	"__getattribute__": func(pc *pyCallCtx) (any, error) {
		a, err := pyValueArg(pc, 1, "name")
		if err != nil {
			return nil, err
		}
		v, err := pyResult(pc.goCall("Get", a[0]))
		return v, attrErr(err, pc.req.args[0])
	},
	"__setattr__": func(pc *pyCallCtx) (any, error) {
		a, err := pyValueArg(pc, 2, "name", "value")
		if err != nil {
			return nil, err
		}
		return pyResult(pc.goCall("Set", a[0], a[1]))
	},
	"__delattr__": func(pc *pyCallCtx) (any, error) {
		a, err := pyValueArg(pc, 1, "name")
		if err != nil {
			return nil, err
		}
		_, err = pc.goCall("Delete", a[0])
		return nil, attrErr(err, pc.req.args[0])
	},
}

var pyValueMethods = map[string]pyMethod{
	"get": pyPlain("Get"),
	"set": pyPlain("Set"),
}

// keyDefault is a dict method of CPython's shape m(key, default=None)
// (get, setdefault), run as the Go dict's method named goMethod.
func keyDefault(goMethod string) func(pc *pyCallCtx) (any, error) {
	return func(pc *pyCallCtx) (any, error) {
		a, err := pc.bind(1, "key", "default")
		if err != nil {
			return nil, err
		}
		k, err := pyKey(pc, a[0])
		if err != nil {
			return nil, err
		}
		def, err := toPB(or(a[1], nil))
		if err != nil {
			return nil, err
		}
		return pyResult(pc.goCall(goMethod, k, def))
	}
}
