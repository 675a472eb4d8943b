// SPDX-License-Identifier: Apache-2.0

package pickle_test

import (
	"bytes"
	"errors"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/multiproc/multiproc/ipc/pickle"
)

// seeds reads the committed CPython output (see testdata/gen_seeds.py).
func seeds(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("testdata/fuzz/FuzzDecode/3.*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no CPython seeds: %v", err)
	}
	out := make(map[string][]byte)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, lit, _ := strings.Cut(string(b), "[]byte(")
		lit = strings.TrimSuffix(strings.TrimSpace(lit), ")")
		s, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = []byte(s)
	}
	return out
}

// Everything CPython 3.11-3.13 wrote for the cases in gen_seeds.py, in
// every protocol from 2 to 5, decodes.
func TestDecodeCPythonOutput(t *testing.T) {
	for name, data := range seeds(t) {
		if _, err := pickle.New().Decode(data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func mustDecode(t *testing.T, data string) any {
	t.Helper()
	v, err := pickle.New().Decode([]byte(data))
	if err != nil {
		t.Fatalf("%q: %v", data, err)
	}
	return v
}

func bigInt(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return n
}

// Pickles taken from CPython 3.11 decode to the documented Go types.
func TestDecodeTypes(t *testing.T) {
	tests := []struct {
		name, data string
		want       any
	}{
		{"dict p4", "\x80\x04\x95\x1e\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x03job\x94K\x07\x8c\x04args\x94]\x94(G?\xf8\x00\x00\x00\x00\x00\x00Neu.",
			pickle.NewDict("job", int64(7), "args", []any{1.5, nil})},
		{"set p2", "\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.", pickle.Set{int64(1), int64(2)}},
		{"set p4", "\x80\x04\x95\t\x00\x00\x00\x00\x00\x00\x00\x8f\x94(K\x01K\x02\x90.", pickle.Set{int64(1), int64(2)}},
		{"frozenset p2", "\x80\x02c__builtin__\nfrozenset\nq\x00]q\x01K\x01a\x85q\x02Rq\x03.", pickle.FrozenSet{int64(1)}},
		{"frozenset p4", "\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00(K\x01\x91\x94.", pickle.FrozenSet{int64(1)}},
		{"bytearray p2", "\x80\x02c__builtin__\nbytearray\nq\x00c_codecs\nencode\nq\x01X\x02\x00\x00\x00abq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05\x85q\x06Rq\x07.", pickle.ByteArray("ab")},
		{"bytearray p4", "\x80\x04\x95#\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\tbytearray\x94\x93\x94C\x02ab\x94\x85\x94R\x94.", pickle.ByteArray("ab")},
		{"bytearray p5", "\x80\x05\x95\r\x00\x00\x00\x00\x00\x00\x00\x96\x02\x00\x00\x00\x00\x00\x00\x00ab\x94.", pickle.ByteArray("ab")},
		{"bytes p2", "\x80\x02c_codecs\nencode\nq\x00X\x02\x00\x00\x00xyq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.", []byte("xy")},
		{"empty bytes p2", "\x80\x02c__builtin__\nbytes\nq\x00)Rq\x01.", []byte{}},
		{"bytes p4", "\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00C\x02xy\x94.", []byte("xy")},
		{"KeyError p2", "\x80\x02cexceptions\nKeyError\nq\x00X\x02\x00\x00\x00zzq\x01\x85q\x02Rq\x03.", &pickle.Exception{Module: "builtins", Name: "KeyError", Args: pickle.Tuple{"zz"}}},
		{"KeyError p4", "\x80\x04\x95\"\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x08KeyError\x94\x93\x94\x8c\x02zz\x94\x85\x94R\x94.", &pickle.Exception{Module: "builtins", Name: "KeyError", Args: pickle.Tuple{"zz"}}},
		{"Token p2", "\x80\x02cmultiprocessing.managers\nToken\nq\x00)\x81q\x01X\x04\x00\x00\x00dictq\x02X\t\x00\x00\x00127.0.0.1q\x03K\x05\x86q\x04X\x02\x00\x00\x007fq\x05\x87q\x06b.",
			&pickle.Token{TypeID: "dict", Address: pickle.Tuple{"127.0.0.1", int64(5)}, ID: "7f"}},
		{"Token p4", "\x80\x04\x95H\x00\x00\x00\x00\x00\x00\x00\x8c\x18multiprocessing.managers\x94\x8c\x05Token\x94\x93\x94)\x81\x94\x8c\x04dict\x94\x8c\t127.0.0.1\x94K\x05\x86\x94\x8c\x027f\x94\x87\x94b.",
			&pickle.Token{TypeID: "dict", Address: pickle.Tuple{"127.0.0.1", int64(5)}, ID: "7f"}},
		{"RemoteError", "\x80\x04\x957\x00\x00\x00\x00\x00\x00\x00\x8c\x18multiprocessing.managers\x94\x8c\x0bRemoteError\x94\x93\x94\x8c\x04boom\x94\x85\x94R\x94.",
			&pickle.Exception{Module: "multiprocessing.managers", Name: "RemoteError", Args: pickle.Tuple{"boom"}}},
		{"2**70", "\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00@.", bigInt("1180591620717411303424")},
		{"-1", "\x80\x02J\xff\xff\xff\xff.", int64(-1)},
		{"-2**63", "\x80\x04\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80.", int64(math.MinInt64)},
		{"2**63", "\x80\x04\x8a\t\x00\x00\x00\x00\x00\x00\x00\x80\x00.", bigInt("9223372036854775808")},
		{"str", "\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00\x8c\x02\xc3\xa9\x94.", "é"},
		{"bools and None", "\x80\x04\x88\x89N\x87.", pickle.Tuple{true, false, nil}},
		{"dict keys view", "\x80\x04\x95 \x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x04list\x94\x93\x94]\x94\x8c\x01a\x94a\x85\x94R\x94.", []any{"a"}},
		{"dict items view p2", "\x80\x02c__builtin__\nlist\nq\x00]q\x01X\x01\x00\x00\x00aq\x02K\x01\x86q\x03a\x85q\x04Rq\x05.", []any{pickle.Tuple{"a", int64(1)}}},
		{"tuple key", "\x80\x04}(K\x01K\x02\x86\x8c\x01au.", pickle.NewDict(pickle.Tuple{int64(1), int64(2)}, "a")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustDecode(t, tt.data)
			if !pickle.Equal(tt.want, got) {
				t.Errorf("got %s, want %s", pickle.Repr(got), pickle.Repr(tt.want))
			}
			if _, isBig := tt.want.(*big.Int); !isBig {
				if _, gotBig := got.(*big.Int); gotBig {
					t.Errorf("%s decoded as *big.Int", pickle.Repr(got))
				}
			}
		})
	}
}

// Shared and recursive objects stay shared, as in Python.
func TestDecodeShared(t *testing.T) {
	// a = []; a.append(a); pickle.dumps(a, 4)
	v := mustDecode(t, "\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00]\x94h\x00a.")
	l := v.([]any)
	inner := l[0].([]any)
	if &inner[0] != &l[0] {
		t.Errorf("the recursive list is not itself")
	}
	// d = {}; [d, d]
	v = mustDecode(t, "\x80\x04]\x94(}\x94h\x01e.")
	l = v.([]any)
	if l[0].(*pickle.Dict) != l[1].(*pickle.Dict) {
		t.Errorf("a shared dict decoded twice")
	}
}

func TestForbiddenGlobals(t *testing.T) {
	tests := []struct {
		name, data, module, global string
	}{
		{"os.system p2", "\x80\x02cos\nsystem\n(X\x02\x00\x00\x00idtR.", "os", "system"},
		{"posix.system p4", "\x80\x04\x8c\x05posix\x8c\x06system\x93\x8c\x02id\x85R.", "posix", "system"},
		{"builtins.eval", "\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x031+1\x85R.", "builtins", "eval"},
		{"__builtin__.getattr", "\x80\x02c__builtin__\ngetattr\n.", "builtins", "getattr"},
		{"copyreg._reconstructor", "\x80\x02ccopy_reg\n_reconstructor\n.", "copy_reg", "_reconstructor"},
		{"a bare class", "\x80\x04\x8c\x08builtins\x8c\x03set\x93.", "builtins", "set"},
		{"Token called", "\x80\x04\x8c\x18multiprocessing.managers\x8c\x05Token\x93)R.", "multiprocessing.managers", "Token"},
		{"set via NEWOBJ", "\x80\x04\x8c\x08builtins\x8c\x03set\x93)\x81.", "builtins", "set"},
		{"bytes from int", "\x80\x04\x8c\x08builtins\x8c\x05bytes\x93J\x00\x00\x00\x40\x85R.", "builtins", "bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pickle.New().Decode([]byte(tt.data))
			var ge *pickle.GlobalError
			if !errors.Is(err, pickle.ErrForbiddenGlobal) || !errors.As(err, &ge) {
				t.Fatalf("got %v, want a forbidden global", err)
			}
			if ge.Module != tt.module || ge.Name != tt.global {
				t.Errorf("error names %s.%s, want %s.%s", ge.Module, ge.Name, tt.module, tt.global)
			}
			if !strings.HasPrefix(err.Error(), "pickle: ") {
				t.Errorf("message %q lacks the package prefix", err)
			}
		})
	}
}

func TestUnsupportedAndMalformed(t *testing.T) {
	tests := []struct {
		name, data string
		want       error
	}{
		{"persistent id", "\x80\x04K\x01Q.", pickle.ErrUnsupported},
		{"extension", "\x80\x04\x82\x01.", pickle.ErrUnsupported},
		{"out-of-band buffer", "\x80\x05\x97.", pickle.ErrUnsupported},
		{"protocol 0 INT", "I1\n.", pickle.ErrUnsupported},
		{"protocol 6", "\x80\x06N.", pickle.ErrUnsupported},
		{"empty", "", pickle.ErrMalformed},
		{"no STOP", "\x80\x04N", pickle.ErrMalformed},
		{"trailing data", "\x80\x04N.N", pickle.ErrMalformed},
		{"two values", "\x80\x04NN.", pickle.ErrMalformed},
		{"stack underflow", "\x80\x04a.", pickle.ErrMalformed},
		{"no mark", "\x80\x04]e.", pickle.ErrMalformed},
		{"unknown memo", "\x80\x04h\x05.", pickle.ErrMalformed},
		{"huge bytes length", "\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x10.", pickle.ErrMalformed},
		{"huge str length", "\x80\x04X\xff\xff\xff\xffabc.", pickle.ErrMalformed},
		{"negative LONG4", "\x80\x04\x8b\xff\xff\xff\xff.", pickle.ErrMalformed},
		{"bad UTF-8", "\x80\x04\x8c\x01\xff.", pickle.ErrMalformed},
		{"unhashable key", "\x80\x04}]K\x01s.", pickle.ErrMalformed},
		{"unhashable set item", "\x80\x04\x8f(]\x90.", pickle.ErrMalformed},
		{"append to a tuple", "\x80\x04)K\x01a.", pickle.ErrMalformed},
		{"unknown opcode", "\x80\x04\xff.", pickle.ErrMalformed},
		{"Token without state", "\x80\x04\x8c\x18multiprocessing.managers\x8c\x05Token\x93)\x81.", pickle.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pickle.New().Decode([]byte(tt.data))
			var de *pickle.DecodeError
			if !errors.Is(err, tt.want) || !errors.As(err, &de) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	// 2000 nested lists: ]] ... each appended to the one below.
	deep := "\x80\x04" + strings.Repeat("]", 2000) + strings.Repeat("a", 1999) + "."
	// The same depth through memo references, with a stack of three.
	var chain strings.Builder
	chain.WriteString("\x80\x04]\x94")
	for i := range 1500 {
		chain.WriteString("]\x94a0j" + string([]byte{byte(i + 1), byte((i + 1) >> 8), 0, 0}))
	}
	chain.WriteString("0j\x00\x00\x00\x00.")
	marks := "\x80\x04" + strings.Repeat("(", 2000)
	memo := "\x80\x04N" + strings.Repeat("\x94", 100) + "."
	tests := []struct {
		name, data string
		codec      *pickle.Codec
		limit      string
	}{
		{"depth", deep, pickle.New(), "depth"},
		{"depth through the memo", chain.String(), pickle.New(), "depth"},
		{"marks", marks, pickle.New(), "depth"},
		{"memo", memo, pickle.New(pickle.MaxMemo(50)), "memo"},
		{"items", "\x80\x04(" + strings.Repeat("N", 101) + "l.", pickle.New(pickle.MaxItems(100)), "items"},
		{"size", "\x80\x04C\x10" + strings.Repeat("x", 16) + ".", pickle.New(pickle.MaxSize(10)), "size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.codec.Decode([]byte(tt.data))
			var le *pickle.LimitError
			if !errors.Is(err, pickle.ErrLimit) || !errors.As(err, &le) || le.Limit != tt.limit {
				t.Fatalf("got %v, want the %s limit", err, tt.limit)
			}
		})
	}
	// Within the default depth, CPython's own deepest output decodes.
	ok := "\x80\x04" + strings.Repeat("]", 900) + strings.Repeat("a", 899) + "."
	if _, err := pickle.New().Decode([]byte(ok)); err != nil {
		t.Errorf("900 nested lists: %v", err)
	}
}

// A pickle that references one list many times through the memo is small,
// and decodes into a small shared graph; copying it into Go value types
// would multiply it, and the work bound stops that.
func TestWorkLimit(t *testing.T) {
	// x0 = [1]; x(i+1) = [xi, xi]; 40 levels, about 500 bytes.
	le32 := func(i int) string { return string([]byte{byte(i), byte(i >> 8), 0, 0}) }
	var b strings.Builder
	b.WriteString("\x80\x04(]\x94K\x01a")
	for i := range 40 {
		b.WriteString("](j" + le32(i) + "j" + le32(i) + "e\x94")
	}
	b.WriteString("1j" + le32(40) + ".")
	data := []byte(b.String())
	c := pickle.New(pickle.MaxDepth(100))
	if _, err := c.Decode(data); err != nil {
		t.Fatalf("the shared graph itself decodes: %v", err)
	}
	var shared []any
	if err := c.Unmarshal(data, &shared); err != nil {
		t.Errorf("into []any (shared items are not copied): %v", err)
	}
	typ := reflect.TypeFor[int]()
	for range 41 {
		typ = reflect.SliceOf(typ)
	}
	err := c.Unmarshal(data, reflect.New(typ).Interface())
	var le *pickle.LimitError
	if !errors.As(err, &le) || le.Limit != "work" {
		t.Errorf("expanding 2**40 copies: got %v, want the work limit", err)
	}
}

type request struct {
	Ident  any
	Method string
	Args   pickle.Tuple
	Kwds   map[string]any
}

type jobMsg struct {
	Job   int
	Args  []*float64
	Label string `pickle:"label"`
	Skip  string `pickle:"-"`
}

func TestUnmarshalTyped(t *testing.T) {
	c := pickle.New()
	// {"job": 7, "args": [1.5, None], "label": "x", "Skip": "no"}
	data, err := c.Marshal(pickle.NewDict("job", 7, "args", []any{1.5, nil}, "label", "x", "Skip", "no"))
	if err != nil {
		t.Fatal(err)
	}
	var j jobMsg
	if err := c.Unmarshal(data, &j); err != nil {
		t.Fatal(err)
	}
	if j.Job != 7 || len(j.Args) != 2 || *j.Args[0] != 1.5 || j.Args[1] != nil || j.Label != "x" || j.Skip != "" {
		t.Errorf("got %+v", j)
	}

	// A manager request tuple into a struct, positionally.
	data = []byte("\x80\x04\x95\x19\x00\x00\x00\x00\x00\x00\x00(N\x8c\x06create\x94\x8c\x04dict\x94\x85\x94}\x94t\x94.")
	var r request
	if err := c.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(request{Method: "create", Args: pickle.Tuple{"dict"}, Kwds: map[string]any{}}, r); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}

	var n *big.Int
	if err := c.Unmarshal([]byte("\x80\x04\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00@."), &n); err != nil || n.String() != "1180591620717411303424" {
		t.Errorf("big: %v %v", n, err)
	}
	var i8 int8
	var te *pickle.TypeError
	if err := c.Unmarshal([]byte("\x80\x04M\x00\x01."), &i8); !errors.As(err, &te) {
		t.Errorf("256 into int8: %v", err)
	}
	var i64 int64
	if err := c.Unmarshal([]byte("\x80\x04\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00@."), &i64); !errors.As(err, &te) {
		t.Errorf("2**70 into int64: %v", err)
	}
	var s string
	if err := c.Unmarshal([]byte("\x80\x04K\x01."), &s); !errors.As(err, &te) || !strings.Contains(err.Error(), "int") {
		t.Errorf("int into string: %v", err)
	}
	var m map[any]string
	if err := c.Unmarshal([]byte("\x80\x04}(K\x01K\x02\x86\x8c\x01au."), &m); !errors.As(err, &te) {
		t.Errorf("tuple key into map[any]string (a Tuple is not comparable): %v", err)
	}
	var m2 map[[2]int]string
	if err := c.Unmarshal([]byte("\x80\x04}(K\x01K\x02\x86\x8c\x01au."), &m2); err != nil || m2[[2]int{1, 2}] != "a" {
		t.Errorf("tuple key into map[[2]int]string: %v %v", m2, err)
	}
	var fs []float64
	if err := c.Unmarshal([]byte("\x80\x04\x8f(K\x01G?\xf8\x00\x00\x00\x00\x00\x00\x90."), &fs); err != nil || len(fs) != 2 {
		t.Errorf("set into []float64: %v %v", fs, err)
	}
	var e pickle.Exception
	if err := c.Unmarshal([]byte("\x80\x04\x95\"\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x08KeyError\x94\x93\x94\x8c\x02zz\x94\x85\x94R\x94."), &e); err != nil || e.Error() != `KeyError("zz")` {
		t.Errorf("exception: %v %v", e.Error(), err)
	}
	if err := c.Unmarshal(data, nil); err == nil {
		t.Errorf("Unmarshal into nil succeeded")
	}
}

func TestMarshal(t *testing.T) {
	type inner struct {
		X int `pickle:"x"`
	}
	f := 2.5
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"nil", nil, nil},
		{"ints", []any{0, 255, 256, 65536, -1, int64(math.MaxInt64), int64(math.MinInt64), uint64(math.MaxUint64)},
			[]any{int64(0), int64(255), int64(256), int64(65536), int64(-1), int64(math.MaxInt64), int64(math.MinInt64), bigInt("18446744073709551615")}},
		{"big", []*big.Int{bigInt("-1180591620717411303424"), bigInt("-2147483649"), bigInt("255")},
			[]any{bigInt("-1180591620717411303424"), int64(-2147483649), int64(255)}},
		{"floats", []float32{1.5}, []any{1.5}},
		{"strings", []string{"", "é", strings.Repeat("x", 300)}, []any{"", "é", strings.Repeat("x", 300)}},
		{"bytes", [][]byte{nil, []byte("ab"), bytes.Repeat([]byte("y"), 70000)}, []any{[]byte{}, []byte("ab"), bytes.Repeat([]byte("y"), 70000)}},
		{"bytearray", pickle.ByteArray("ab"), pickle.ByteArray("ab")},
		{"tuples", []pickle.Tuple{{}, {1}, {1, 2}, {1, 2, 3}, {1, 2, 3, 4}},
			[]any{pickle.Tuple{}, pickle.Tuple{int64(1)}, pickle.Tuple{int64(1), int64(2)}, pickle.Tuple{int64(1), int64(2), int64(3)}, pickle.Tuple{int64(1), int64(2), int64(3), int64(4)}}},
		{"sets", []any{pickle.Set{1, "a"}, pickle.FrozenSet{}}, []any{pickle.Set{int64(1), "a"}, pickle.FrozenSet{}}},
		{"map", map[string]int{"b": 2, "a": 1}, pickle.NewDict("a", int64(1), "b", int64(2))},
		{"struct", struct {
			Name  string
			In    inner
			P     *float64
			Q     *int
			skip  int
			Bytes [2]byte
		}{"n", inner{3}, &f, nil, 1, [2]byte{1, 2}},
			pickle.NewDict("Name", "n", "In", pickle.NewDict("x", int64(3)), "P", 2.5, "Q", nil, "Bytes", []byte{1, 2})},
		{"token", pickle.Token{TypeID: "dict", Address: pickle.Tuple{"127.0.0.1", 5}, ID: "7f"},
			&pickle.Token{TypeID: "dict", Address: pickle.Tuple{"127.0.0.1", int64(5)}, ID: "7f"}},
		{"exception", &pickle.Exception{Module: "builtins", Name: "KeyError", Args: pickle.Tuple{"k"}},
			&pickle.Exception{Module: "builtins", Name: "KeyError", Args: pickle.Tuple{"k"}}},
		{"long list", make([]int, 2500), func() any {
			l := make([]any, 2500)
			for i := range l {
				l[i] = int64(0)
			}
			return l
		}()},
	}
	for _, p := range []int{4, 5} {
		c := pickle.New(pickle.Protocol(p))
		for _, tt := range tests {
			t.Run(tt.name+"/p"+strconv.Itoa(p), func(t *testing.T) {
				data, err := c.Marshal(tt.in)
				if err != nil {
					t.Fatal(err)
				}
				if data[0] != 0x80 || int(data[1]) != p {
					t.Errorf("header %x", data[:2])
				}
				got, err := c.Decode(data)
				if err != nil {
					t.Fatalf("%q: %v", data, err)
				}
				if !pickle.Equal(tt.want, got) {
					t.Errorf("got %s, want %s", pickle.Repr(got), pickle.Repr(tt.want))
				}
			})
		}
	}
}

func TestMarshalErrors(t *testing.T) {
	c := pickle.New(pickle.MaxDepth(10), pickle.MaxSize(1000))
	type loop struct{ Next *loop }
	l := &loop{}
	l.Next = l
	var ue *pickle.UnsupportedTypeError
	var le *pickle.LimitError
	tests := []struct {
		name string
		in   any
		ok   func(error) bool
	}{
		{"chan", make(chan int), func(err error) bool { return errors.As(err, &ue) }},
		{"func", func() {}, func(err error) bool { return errors.As(err, &ue) }},
		{"bad UTF-8", "\xff", func(err error) bool { return errors.As(err, &ue) }},
		{"unhashable set item", pickle.Set{[]any{}}, func(err error) bool { return errors.As(err, &ue) }},
		{"forbidden exception class", &pickle.Exception{Module: "os", Name: "system"}, func(err error) bool { return errors.As(err, &ue) }},
		{"cycle", l, func(err error) bool { return errors.As(err, &le) && le.Limit == "depth" }},
		{"size", bytes.Repeat([]byte("x"), 2000), func(err error) bool { return errors.As(err, &le) && le.Limit == "size" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Marshal(tt.in)
			if !tt.ok(err) {
				t.Errorf("got %v", err)
			}
		})
	}
}
