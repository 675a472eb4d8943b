// SPDX-License-Identifier: Apache-2.0

package pickle

import (
	"bytes"
	"math"
	"math/big"
)

// Equal reports whether two decoded values are equal as Python's == would
// find them: 1 == 1.0 == True, a list never equals a tuple, sets and
// dicts compare without regard to order, NaN equals nothing. Values nested
// deeper than DefaultMaxDepth compare unequal.
func Equal(a, b any) bool { return equal(a, b, 0) }

func equal(a, b any, depth int) bool {
	if depth > DefaultMaxDepth {
		return false
	}
	if na, ok := number(a); ok {
		nb, ok := number(b)
		return ok && na.Cmp(nb) == 0 && !isNaN(a) && !isNaN(b)
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []byte:
		y, ok := b.([]byte)
		if !ok {
			if ba, ok2 := b.(ByteArray); ok2 {
				y, ok = ba, true
			}
		}
		return ok && bytes.Equal(x, y)
	case ByteArray:
		return equal([]byte(x), b, depth)
	case []any:
		y, ok := b.([]any)
		return ok && equalSeq(x, y, depth)
	case Tuple:
		y, ok := b.(Tuple)
		return ok && equalSeq(x, y, depth)
	case Set:
		return equalSet(x, b, depth)
	case FrozenSet:
		return equalSet(x, b, depth)
	case *Dict:
		y, ok := b.(*Dict)
		if !ok || x.Len() != y.Len() {
			return false
		}
		for k, v := range x.All() {
			w, ok := y.Get(k)
			if !ok || !equal(v, w, depth+1) {
				return false
			}
		}
		return true
	case *Token:
		y, ok := b.(*Token)
		return ok && x.TypeID == y.TypeID && x.ID == y.ID && equal(x.Address, y.Address, depth+1)
	case *Exception:
		y, ok := b.(*Exception)
		return ok && x.Module == y.Module && x.Name == y.Name && equalSeq(x.Args, y.Args, depth)
	}
	return false
}

func equalSeq(a, b []any, depth int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !equal(a[i], b[i], depth+1) {
			return false
		}
	}
	return true
}

func equalSet(a []any, b any, depth int) bool {
	var y []any
	switch s := b.(type) {
	case Set:
		y = s
	case FrozenSet:
		y = s
	default:
		return false
	}
	if len(a) != len(y) {
		return false
	}
	keys := make(map[any]bool, len(a))
	for _, it := range a {
		h, err := hashKey(it, nil)
		if err != nil {
			return false
		}
		keys[h] = true
	}
	for _, it := range y {
		h, err := hashKey(it, nil)
		if err != nil || !keys[h] {
			return false
		}
	}
	return true
}

func isNaN(v any) bool {
	f, ok := v.(float64)
	return ok && math.IsNaN(f)
}

// number returns a numeric value as an exact big.Float.
func number(v any) (*big.Float, bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return big.NewFloat(1), true
		}
		return big.NewFloat(0), true
	case int64:
		return new(big.Float).SetInt64(x), true
	case *big.Int:
		return new(big.Float).SetInt(x), true
	case float64:
		if math.IsNaN(x) {
			return big.NewFloat(0), true
		}
		return big.NewFloat(x), true
	}
	return nil, false
}
