// SPDX-License-Identifier: Apache-2.0

package pickle_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/pickle"
)

// pyPickle is a CPython peer that dials a Go Listener with an authkey and
// speaks pickles through Connection.send and recv:
//  1. for each Python expression in argv[3] (a JSON list), it sends the
//     value, receives what Go sends back and replies ("ok", i) when that
//     equals the original (same types, same order), ("bad", i, repr) if not;
//  2. it sends raw frames Go must refuse (a forbidden global, a REDUCE of
//     os.system, nesting past the depth bound, a pickle past the size
//     bound), then "after";
//  3. it receives (expression, value) pairs from Go until end of stream
//     and replies ("ok", expr) when the value equals eval(expr), else
//     ("bad", expr, repr(value)).
const pyPickle = `
import json, os, pickle, queue, sys
import multiprocessing.managers as managers
from multiprocessing.connection import Client
addr, key, exprs = sys.argv[1], sys.argv[2].encode(), json.loads(sys.argv[3])
Token = managers.Token

def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and a != a:
        return b != b
    if isinstance(a, BaseException):
        return a.args == b.args and a.__dict__ == b.__dict__
    if isinstance(a, Token):
        return (a.typeid, a.address, a.id) == (b.typeid, b.address, b.id)
    return a == b

c = Client(addr, family='AF_UNIX', authkey=key)
for i, e in enumerate(exprs):
    v = eval(e)
    c.send(v)
    back = c.recv()
    c.send(("ok", i) if same(back, v) else ("bad", i, repr(back)))
c.send_bytes(pickle.dumps(os.system))
c.send_bytes(b"\x80\x02cos\nsystem\n(X\x02\x00\x00\x00idtR.")
c.send_bytes(b"\x80\x04" + b"]" * 5000 + b"a" * 4999 + b".")
c.send(b"x" * (2 << 20))
c.send("after")
while True:
    try:
        e, v = c.recv()
    except EOFError:
        break
    c.send(("ok", e) if same(v, eval(e)) else ("bad", e, repr(v)))
print("DONE", flush=True)
`

// pyToGo pairs a Python expression with the Go value it decodes to.
var pyToGo = []struct {
	expr string
	want any
}{
	{`{"job": 7, "args": [1.5, None]}`, pickle.NewDict("job", int64(7), "args", []any{1.5, nil})},
	{`(1, "two", 3.0, None, True, False)`, pickle.Tuple{int64(1), "two", 3.0, nil, true, false}},
	{`[2**70, -2**70, 2**63, -2**63, 2**31, -1, 0]`, []any{bigInt("1180591620717411303424"), bigInt("-1180591620717411303424"), bigInt("9223372036854775808"), int64(math.MinInt64), int64(1 << 31), int64(-1), int64(0)}},
	{`3**300`, new(big.Int).Exp(big.NewInt(3), big.NewInt(300), nil)},
	{`[float("inf"), -0.0, 1e-300]`, []any{math.Inf(1), math.Copysign(0, -1), 1e-300}},
	{`("", "é", "日本", "x" * 70000)`, pickle.Tuple{"", "é", "日本", strings.Repeat("x", 70000)}},
	{`(b"", b"\x00\xff", bytearray(b"ba"), b"y" * 300)`, pickle.Tuple{[]byte{}, []byte{0, 0xff}, pickle.ByteArray("ba"), []byte(strings.Repeat("y", 300))}},
	{`{1, 2, "three"}`, pickle.Set{int64(1), int64(2), "three"}},
	{`frozenset([(1, 2), "x"])`, pickle.FrozenSet{pickle.Tuple{int64(1), int64(2)}, "x"}},
	{`{(1, "t"): [1], 2.5: {}, None: set(), b"k": frozenset()}`, pickle.NewDict(pickle.Tuple{int64(1), "t"}, []any{int64(1)}, 2.5, pickle.NewDict(), nil, pickle.Set{}, []byte("k"), pickle.FrozenSet{})},
	{`[[[[[[[[[[["deep"]]]]]]]]]]]`, []any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{"deep"}}}}}}}}}}}},
	{`list(range(3000))`, func() any {
		l := make([]any, 3000)
		for i := range l {
			l[i] = int64(i)
		}
		return l
	}()},
	{`{str(i): i for i in range(1500)}`, func() any {
		d := pickle.NewDict()
		for i := range 1500 {
			d.Set(itoa(i), int64(i))
		}
		return d
	}()},
	{`Token("dict", ("127.0.0.1", 5000), "7f01")`, &pickle.Token{TypeID: "dict", Address: pickle.Tuple{"127.0.0.1", int64(5000)}, ID: "7f01"}},
	{`("#ERROR", KeyError("zz"))`, pickle.Tuple{"#ERROR", &pickle.Exception{Module: "builtins", Name: "KeyError", Args: pickle.Tuple{"zz"}}}},
	{`managers.RemoteError("boom")`, &pickle.Exception{Module: "multiprocessing.managers", Name: "RemoteError", Args: pickle.Tuple{"boom"}}},
	{`queue.Empty()`, &pickle.Exception{Module: "_queue", Name: "Empty"}},
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

type goJob struct {
	Job  int     `pickle:"job"`
	Args []any   `pickle:"args"`
	Opt  *string `pickle:"opt"`
}

// goToPy pairs a Go value with the Python expression it must equal.
var goToPy = []struct {
	expr string
	v    any
}{
	{`{"job": 7, "args": [1.5, None], "opt": None}`, goJob{Job: 7, Args: []any{1.5, nil}}},
	{`(1, "two", 3.0, None, True)`, pickle.Tuple{1, "two", 3.0, nil, true}},
	{`[2**64 - 1, -2**63, 2**100, 255, 65535, -2**31 - 1]`, []any{uint64(math.MaxUint64), int64(math.MinInt64), new(big.Int).Lsh(big.NewInt(1), 100), 255, 65535, int64(-(1 << 31) - 1)}},
	{`{"a": 1, "b": 2}`, map[string]int{"b": 2, "a": 1}},
	{`{1, "x", (2, 3)}`, pickle.Set{1, "x", pickle.Tuple{2, 3}}},
	{`frozenset({b"k"})`, pickle.FrozenSet{[]byte("k")}},
	{`[b"raw", bytearray(b"ba"), "str"]`, []any{[]byte("raw"), pickle.ByteArray("ba"), "str"}},
	{`{(1, 2): "tuple key", None: [], 1.5: {}}`, pickle.NewDict(pickle.Tuple{1, 2}, "tuple key", nil, []any{}, 1.5, pickle.NewDict())},
	{`Token("queue", "/tmp/s", "7f02")`, pickle.Token{TypeID: "queue", Address: "/tmp/s", ID: "7f02"}},
	{`KeyError("k")`, &pickle.Exception{Module: "builtins", Name: "KeyError", Args: pickle.Tuple{"k"}}},
	{`list(range(2500))`, func() []int {
		l := make([]int, 2500)
		for i := range l {
			l[i] = i
		}
		return l
	}()},
}

// Go and CPython exchange pickled objects over an authenticated unix
// socket: what Python sends decodes to the documented Go values and goes
// back equal; what Go sends Python's recv reads equal; forbidden globals
// and bounded payloads are refused and the connection goes on.
func TestInteropPython(t *testing.T) {
	python := mptest.Python(t)
	versions := []string{""}
	for _, v := range mptest.PythonVersions() {
		if v == "3.12.1" || v == "3.13.0" {
			versions = append(versions, v)
		}
	}
	for _, v := range versions {
		name := v
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			pt, gp := pyToGo, goToPy
			if v != "" { // a subset for the other versions
				pt, gp = pt[:9], gp[:6]
			}
			interop(t, python, v, pt, gp)
		})
	}
}

func interop(t *testing.T, python, version string, pt []struct {
	expr string
	want any
}, gp []struct {
	expr string
	v    any
}) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	codec := pickle.New(pickle.MaxSize(1 << 20))
	l, err := ipc.Listen("unix", filepath.Join(t.TempDir(), "s"), ipc.Authkey([]byte("key")),
		ipc.ConnOptions(ipc.UseCodec(codec)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var exprs []string
	for _, c := range pt {
		exprs = append(exprs, c.expr)
	}
	js, _ := json.Marshal(exprs)
	cmd := exec.Command(python, "-c", pyPickle, l.Addr().String(), "key", string(js))
	if version != "" {
		cmd.Env = append(os.Environ(), "PYENV_VERSION="+version)
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	c, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	reply := func(what string) {
		t.Helper()
		var r pickle.Tuple
		if err := c.Recv(ctx, &r); err != nil {
			t.Fatalf("%s: python's reply: %v", what, err)
		}
		if len(r) == 0 || r[0] != "ok" {
			t.Errorf("%s: python says %s", what, pickle.Repr(r))
		}
	}
	// 1. Python -> Go -> Python.
	for _, tc := range pt {
		var got any
		if err := c.Recv(ctx, &got); err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		if !pickle.Equal(tc.want, got) {
			t.Errorf("%s decoded to %s", tc.expr, pickle.Repr(got))
		}
		if err := c.Send(ctx, got); err != nil {
			t.Fatalf("%s: send back: %v", tc.expr, err)
		}
		reply(tc.expr)
	}
	// 2. Refused frames; the connection goes on.
	for _, want := range []struct {
		what string
		err  error
	}{
		{"pickle.dumps(os.system)", pickle.ErrForbiddenGlobal},
		{"os.system('id') by REDUCE", pickle.ErrForbiddenGlobal},
		{"5000 nested lists", pickle.ErrLimit},
		{"a 2 MiB pickle", pickle.ErrLimit},
	} {
		var got any
		err := c.Recv(ctx, &got)
		if !errors.Is(err, want.err) {
			t.Errorf("%s: got %v, %v; want %v", want.what, pickle.Repr(got), err, want.err)
		} else {
			t.Logf("%s: %v", want.what, err)
		}
	}
	var after string
	if err := c.Recv(ctx, &after); err != nil || after != "after" {
		t.Fatalf("after the refusals: %q, %v", after, err)
	}
	// 3. Go -> Python.
	for _, tc := range gp {
		if err := c.Send(ctx, pickle.Tuple{tc.expr, tc.v}); err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		reply(tc.expr)
	}
	c.Close()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "DONE" {
		t.Errorf("python did not finish: %q", line)
	}
}
