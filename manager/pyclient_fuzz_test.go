// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/pickle"
)

// FuzzPyReply feeds arbitrary frames to a PyClient as a CPython manager's
// reply. It never panics, and every outcome is a value or one of the
// documented errors: a decoding error of the pickle codec, a *RemoteError
// for '#ERROR'/'#TRACEBACK'/'#UNSERIALIZABLE', or ErrBadReply.
func FuzzPyReply(f *testing.F) {
	for _, v := range []any{
		pickle.Tuple{"#RETURN", nil},
		pickle.Tuple{"#RETURN", pickle.Tuple{"7f01", pickle.Tuple{"get", "keys"}}},
		pickle.Tuple{"#ERROR", &pickle.Exception{Module: "builtins", Name: "KeyError", Args: pickle.Tuple{"k"}}},
		pickle.Tuple{"#ERROR", "not an exception"},
		pickle.Tuple{"#TRACEBACK", "Traceback ...\nAttributeError: method 'x' is not in exposed=()\n"},
		pickle.Tuple{"#UNSERIALIZABLE", "TypeError: cannot pickle"},
		pickle.Tuple{"#PROXY", pickle.Tuple{pickle.Tuple{"__next__"}, pickle.Token{TypeID: "Iterator", Address: "/s", ID: "7f02"}}},
		pickle.Tuple{"#PROXY", pickle.Tuple{1, 2}},
		pickle.Tuple{"#BOGUS", nil},
		[]any{"#RETURN"},
	} {
		b, err := pickle.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	codec := pickle.New(pickle.MaxSize(1 << 16))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a, b, err := ipc.Pipe(true, ipc.UseCodec(codec))
		if err != nil {
			t.Skip(err)
		}
		defer a.Close()
		defer b.Close()
		c := &PyClient{network: "unix", address: "/nowhere", codec: codec, log: zap.NewNop()}
		if err := b.SendBytes(ctx, data); err != nil {
			t.Fatal(err)
		}
		v, err := c.request(ctx, a, "7f01", "method", []any{1}, nil)
		if err == nil {
			if o, ok := v.(*PyObject); ok && o.token.Address != "/nowhere" {
				t.Errorf("a #PROXY token keeps the server's address %v", o.token.Address)
			}
			return
		}
		var de *pickle.DecodeError
		var re *RemoteError
		if !errors.As(err, &de) && !errors.As(err, &re) && !errors.Is(err, ErrBadReply) {
			t.Fatalf("undocumented error %T: %v", err, err)
		}
		// The request was sent whole, whatever the reply.
		var req pickle.Tuple
		if err := b.Recv(ctx, &req); err != nil || len(req) != 4 || req[1] != "method" {
			t.Fatalf("request: %v %v", pickle.Repr(req), err)
		}
	})
}
