// SPDX-License-Identifier: Apache-2.0

package pickle_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/pickle"
)

// The bytes CPython 3.11 writes for conn.send({"job": 7, "args": [1.5, None]}).
var fromPython = []byte("\x80\x04\x95\x1e\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x03job\x94K\x07\x8c\x04args\x94]\x94(G?\xf8\x00\x00\x00\x00\x00\x00Neu.")

// Decoding into a struct: keys match tags, then field names.
func ExampleUnmarshal() {
	var job struct {
		Job  int   `pickle:"job"`
		Args []any `pickle:"args"`
	}
	if err := pickle.Unmarshal(fromPython, &job); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(job.Job, job.Args)
	// Output: 7 [1.5 <nil>]
}

// Decoding into any gives the documented Go types: a dict is an ordered
// *Dict.
func ExampleCodec_Decode() {
	v, err := pickle.New().Decode(fromPython)
	if err != nil {
		fmt.Println(err)
		return
	}
	d := v.(*pickle.Dict)
	args, _ := d.Get("args")
	fmt.Println(pickle.Repr(v), len(args.([]any)))
	// Output: {"job": 7, "args": [1.5, None]} 2
}

// A pickle naming a global outside the allowlist is refused; nothing runs.
func ExampleErrForbiddenGlobal() {
	evil := []byte("\x80\x02cos\nsystem\n(X\x02\x00\x00\x00idtR.") // os.system("id")
	var v any
	err := pickle.Unmarshal(evil, &v)
	var ge *pickle.GlobalError
	fmt.Println(errors.Is(err, pickle.ErrForbiddenGlobal), errors.As(err, &ge) && ge.Module == "os")
	fmt.Println(err)
	// Output:
	// true true
	// pickle: at byte 2 (opcode 0x63): global os.system is not allowed
}

// A Conn that speaks pickles, as a CPython peer's send and recv do.
func Example_conn() {
	ctx := context.Background()
	a, b, err := ipc.Pipe(true, ipc.UseCodec(pickle.New()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	defer b.Close()
	go a.Send(ctx, pickle.Tuple{"#RETURN", map[string]int{"hits": 3}})
	var reply struct {
		Kind  string
		Value map[string]int
	}
	if err := b.Recv(ctx, &reply); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(reply.Kind, reply.Value["hits"])
	// Output: #RETURN 3
}
