// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"fmt"
	"math/big"
	"slices"

	"github.com/multiproc/multiproc/ipc/pickle"
	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// Values between CPython's pickles (as ipc/pickle decodes them) and the
// server's Values. A Python value becomes:
//
//	None, bool, str, bytes    null, bool, string, bytes
//	int                       int, or uint above the int64 range; wider is a TypeError
//	float                     double
//	bytearray                 bytes
//	list, tuple, set, frozenset  list (a Python client gets a list back)
//	dict                      map (keys: None, bool, int, float, str, bytes; others are a TypeError)
//
// nested at most MaxDepth deep. Anything else (a Token, an exception) is
// a TypeError. A Value goes back as None, bool, int, float, str, bytes,
// list or dict; a proxy inside it cannot go to a Python client.

// pyAbsent marks an argument the caller left out.
type pyAbsent struct{}

func toPB(v any) (*pb.Value, error) { return toPBDepth(v, 0) }

func toPBDepth(v any, depth int) (*pb.Value, error) {
	if depth > MaxDepth {
		return nil, &typeError{fmt.Sprintf("value nested deeper than %d", MaxDepth)}
	}
	switch x := v.(type) {
	case nil:
		return nullValue, nil
	case bool:
		return boolValue(x), nil
	case int64:
		return intValue(x), nil
	case *big.Int:
		if x.IsUint64() {
			return &pb.Value{Kind: &pb.Value_Uint{Uint: x.Uint64()}}, nil
		}
		return nil, &typeError{"int beyond 64 bits cannot be stored in a Go manager"}
	case float64:
		return doubleValue(x), nil
	case string:
		return strValue(x), nil
	case []byte:
		return &pb.Value{Kind: &pb.Value_Bytes{Bytes: x}}, nil
	case pickle.ByteArray:
		return &pb.Value{Kind: &pb.Value_Bytes{Bytes: x}}, nil
	case []any:
		return toPBList(x, depth)
	case pickle.Tuple:
		return toPBList(x, depth)
	case pickle.Set:
		return toPBList(x, depth)
	case pickle.FrozenSet:
		return toPBList(x, depth)
	case *pickle.Dict:
		entries := make([]*pb.Entry, 0, x.Len())
		for k, val := range x.All() {
			kv, err := toPBDepth(k, depth+1)
			if err != nil {
				return nil, err
			}
			if _, err := keyOf(kv); err != nil {
				return nil, &typeError{fmt.Sprintf("a dict key of type %s cannot be stored in a Go manager", pyTypeName(k))}
			}
			vv, err := toPBDepth(val, depth+1)
			if err != nil {
				return nil, err
			}
			entries = append(entries, &pb.Entry{Key: kv, Value: vv})
		}
		return &pb.Value{Kind: &pb.Value_Map{Map: &pb.Map{Entries: entries}}}, nil
	}
	return nil, &typeError{fmt.Sprintf("a Python %s cannot be stored in a Go manager", pyTypeName(v))}
}

func toPBList(items []any, depth int) (*pb.Value, error) {
	out := make([]*pb.Value, len(items))
	for i, it := range items {
		v, err := toPBDepth(it, depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return listValue(out), nil
}

func pyTypeName(v any) string {
	switch v.(type) {
	case *pickle.Token:
		return "proxy or Token"
	case *pickle.Exception:
		return "exception"
	case pickle.Tuple:
		return "tuple"
	case pickle.FrozenSet:
		return "frozenset"
	case []any:
		return "list"
	case *pickle.Dict:
		return "dict"
	}
	return fmt.Sprintf("%T", v)
}

// fromPB converts a Value for a Python client.
func fromPB(v *pb.Value) (any, error) {
	switch x := v.GetKind().(type) {
	case nil, *pb.Value_Null:
		return nil, nil
	case *pb.Value_Bool:
		return x.Bool, nil
	case *pb.Value_Int:
		return x.Int, nil
	case *pb.Value_Uint:
		return x.Uint, nil
	case *pb.Value_Double:
		return x.Double, nil
	case *pb.Value_String_:
		return x.String_, nil
	case *pb.Value_Bytes:
		return x.Bytes, nil
	case *pb.Value_List:
		out := make([]any, len(x.List.GetItems()))
		for i, it := range x.List.GetItems() {
			v, err := fromPB(it)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case *pb.Value_Map:
		d := &pickle.Dict{}
		for _, e := range x.Map.GetEntries() {
			k, err := fromPB(e.GetKey())
			if err != nil {
				return nil, err
			}
			val, err := fromPB(e.GetValue())
			if err != nil {
				return nil, err
			}
			if err := d.Set(k, val); err != nil {
				return nil, &typeError{err.Error()}
			}
		}
		return d, nil
	case *pb.Value_Proxy:
		return nil, &typeError{"the value holds a proxy to a shared object, which a Python client cannot receive"}
	}
	return nil, &typeError{"unknown value kind"}
}

// bind matches a call's arguments to parameter names, as Python binds
// positional and keyword arguments. A parameter not given is pyAbsent{};
// the first req are required.
func (pc *pyCallCtx) bind(req int, names ...string) ([]any, error) {
	return bindPy(pc.req.method, pc.req.args, pc.req.kwds, req, names...)
}

func bindPy(method string, args pickle.Tuple, kwds *pickle.Dict, req int, names ...string) ([]any, error) {
	if len(args) > len(names) {
		return nil, pyExc("TypeError", fmt.Sprintf("%s() takes at most %d arguments (%d given)", method, len(names), len(args)))
	}
	out := make([]any, len(names))
	for i := range out {
		out[i] = pyAbsent{}
	}
	copy(out, args)
	for k, v := range kwds.All() {
		name, _ := k.(string)
		i := slices.Index(names, name)
		if i < 0 {
			return nil, pyExc("TypeError", fmt.Sprintf("%s() got an unexpected keyword argument %s", method, pickle.Repr(k)))
		}
		if _, ok := out[i].(pyAbsent); !ok {
			return nil, pyExc("TypeError", fmt.Sprintf("%s() got multiple values for argument '%s'", method, name))
		}
		out[i] = v
	}
	for i := range req {
		if _, ok := out[i].(pyAbsent); ok {
			return nil, pyExc("TypeError", fmt.Sprintf("%s() missing required argument '%s'", method, names[i]))
		}
	}
	return out, nil
}

func absent(v any) bool { _, ok := v.(pyAbsent); return ok }

// or returns v, or def when v was left out.
func or(v, def any) any {
	if absent(v) {
		return def
	}
	return v
}

// pyTruth is Python's truth of a flag argument (block=, blocking=).
func pyTruth(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	}
	return true
}
