// SPDX-License-Identifier: Apache-2.0

package pickle

import (
	"math"
	"math/big"
	"strconv"
	"strings"
)

// reprString formats a decoded value as Python's repr would, within limits.
// Repr formats a decoded value as Python's repr would, cut short past a
// couple of hundred characters: for messages and logs.
func Repr(v any) string { return reprString(v) }

func reprString(v any) string {
	var b strings.Builder
	writeRepr(&b, v, 0)
	return b.String()
}

const reprMax = 200

func writeRepr(b *strings.Builder, v any, depth int) {
	if depth > 8 || b.Len() > reprMax {
		b.WriteString("...")
		return
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("None")
	case bool:
		if x {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case *big.Int:
		b.WriteString(x.String())
	case float64:
		switch {
		case math.IsInf(x, 1):
			b.WriteString("inf")
		case math.IsInf(x, -1):
			b.WriteString("-inf")
		case math.IsNaN(x):
			b.WriteString("nan")
		default:
			s := strconv.FormatFloat(x, 'g', -1, 64)
			if !strings.ContainsAny(s, ".en") {
				s += ".0"
			}
			b.WriteString(s)
		}
	case string:
		b.WriteString(strconv.Quote(x))
	case []byte:
		b.WriteString("b" + strconv.Quote(string(x)))
	case ByteArray:
		b.WriteString("bytearray(b" + strconv.Quote(string(x)) + ")")
	case []any:
		writeSeq(b, "[", "]", x, depth)
	case Tuple:
		if len(x) == 1 {
			writeSeq(b, "(", ",)", x, depth)
		} else {
			writeSeq(b, "(", ")", x, depth)
		}
	case Set:
		writeSeq(b, "{", "}", x, depth)
	case FrozenSet:
		writeSeq(b, "frozenset({", "})", x, depth)
	case *Dict:
		b.WriteByte('{')
		i := 0
		for k, val := range x.All() {
			if i > 0 {
				b.WriteString(", ")
			}
			i++
			writeRepr(b, k, depth+1)
			b.WriteString(": ")
			writeRepr(b, val, depth+1)
			if b.Len() > reprMax {
				b.WriteString("...")
				break
			}
		}
		b.WriteByte('}')
	case *Token:
		b.WriteString("Token(typeid=" + strconv.Quote(x.TypeID) + ", address=")
		writeRepr(b, x.Address, depth+1)
		b.WriteString(", id=" + strconv.Quote(x.ID) + ")")
	case *Exception:
		b.WriteString(x.Error())
	default:
		b.WriteString(pyTypeName(v))
	}
}

func writeSeq(b *strings.Builder, open, close string, items []any, depth int) {
	b.WriteString(open)
	for i, it := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		writeRepr(b, it, depth+1)
		if b.Len() > reprMax {
			b.WriteString("...")
			break
		}
	}
	b.WriteString(close)
}
