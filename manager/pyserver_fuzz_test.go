// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/pickle"
)

// FuzzPyCall feeds arbitrary frames to the CPython-protocol server, as
// method calls and as server requests, on a server holding a dict, a
// list, a queue and a lock: it never panics (a method's panic would be
// reported as "panicked"), and every frame gets a reply.
func FuzzPyCall(f *testing.F) {
	s := NewServer()
	defer s.Close()
	s.pyInit()
	var idents []string
	for _, typeid := range []string{"dict", "list", "Queue", "Lock", "Namespace", "Event"} {
		e, err := s.pyCreate(typeid, nil, nil)
		if err != nil {
			f.Fatal(err)
		}
		idents = append(idents, pyIdent(e))
	}
	seed := func(v any) {
		b, err := pickle.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	kw := pickle.NewDict("timeout", 0.01)
	seed(pickle.Tuple{idents[0], "__setitem__", pickle.Tuple{"k", pickle.Tuple{int64(1), "x"}}, &pickle.Dict{}})
	seed(pickle.Tuple{idents[0], "__getitem__", pickle.Tuple{"k"}, &pickle.Dict{}})
	seed(pickle.Tuple{idents[0], "update", pickle.Tuple{[]any{pickle.Tuple{"a", int64(1)}}}, pickle.NewDict("b", 2.5)})
	seed(pickle.Tuple{idents[0], "__iter__", pickle.Tuple{}, &pickle.Dict{}})
	seed(pickle.Tuple{idents[1], "append", pickle.Tuple{[]any{nil, true}}, &pickle.Dict{}})
	seed(pickle.Tuple{idents[1], "__mul__", pickle.Tuple{int64(3)}, &pickle.Dict{}})
	seed(pickle.Tuple{idents[2], "put", pickle.Tuple{"job"}, kw})
	seed(pickle.Tuple{idents[2], "get", pickle.Tuple{}, kw})
	seed(pickle.Tuple{idents[3], "acquire", pickle.Tuple{true, 0.01}, &pickle.Dict{}})
	seed(pickle.Tuple{idents[3], "release", pickle.Tuple{}, &pickle.Dict{}})
	seed(pickle.Tuple{idents[4], "__setattr__", pickle.Tuple{"x", int64(1)}, &pickle.Dict{}})
	seed(pickle.Tuple{idents[5], "wait", pickle.Tuple{0.01}, &pickle.Dict{}})
	seed(pickle.Tuple{nil, "create", pickle.Tuple{"dict"}, pickle.NewDict("a", 1)})
	seed(pickle.Tuple{nil, "incref", pickle.Tuple{idents[0]}, &pickle.Dict{}})
	seed(pickle.Tuple{nil, "get_methods", pickle.Tuple{&pickle.Token{TypeID: "dict", ID: idents[0]}}, &pickle.Dict{}})
	a, b, err := ipc.Pipe(true)
	if err != nil {
		f.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		// A call that would wait forever (a get without timeout) ends
		// with the connection's context.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		sc := &sconn{s: s, c: a, ctx: ctx, cancel: cancel, refs: map[uint64]int64{},
			inflight: map[uint64]context.CancelFunc{}, held: map[*lockCore]struct{}{}}
		defer sc.release()
		kind, result := s.pyCall(sc, data)
		if kind == "" {
			t.Fatal("no reply")
		}
		if text, ok := result.(string); ok && kind == pyTraceback && strings.Contains(text, "panicked") {
			t.Fatal(text)
		}
		if _, err := s.py.codec.Marshal(pickle.Tuple{kind, result}); err != nil && kind != pyReturn {
			t.Fatalf("reply %s does not encode: %v", kind, err)
		}
		if req, err := s.decodePy(data); err == nil && req.method != "shutdown" && req.method != "accept_connection" {
			s.pyServerRequest(req)
		}
	})
}
