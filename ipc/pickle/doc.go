// SPDX-License-Identifier: Apache-2.0

// Package pickle is a codec for Python's pickle format, bounded and safe
// for input from a peer that is not trusted, so that a Go program and a
// CPython program exchange objects over an ipc.Conn: what Python writes
// with multiprocessing's Connection.send, Go reads with Conn.Recv, and
// the other way round.
//
//	c, err := ipc.Dial(ctx, "unix", path, ipc.Authkey(key),
//		ipc.ConnOptions(ipc.UseCodec(pickle.New())))
//	var job struct {
//		Job  int   `pickle:"job"`
//		Args []any `pickle:"args"`
//	}
//	err = c.Recv(ctx, &job) // Python: conn.send({"job": 7, "args": [1.5, None]})
//
// # What is read and written
//
// The decoder reads protocols 2 to 5, which covers everything CPython 3.8
// to 3.14 writes by default (ForkingPickler uses pickle.DEFAULT_PROTOCOL:
// 4 up to 3.13, 5 from 3.14). Marshal writes protocol 4, or 5 with
// [Protocol]; every CPython from 3.8 reads both. It writes no memo and
// no frames, which CPython's reader does not need.
//
// Decoding into an `any` gives these Go types:
//
//	None                   nil
//	bool                   bool
//	int                    int64, or *big.Int when it does not fit
//	float                  float64
//	str                    string (valid UTF-8; lone surrogates are refused)
//	bytes                  []byte
//	bytearray              ByteArray
//	list                   []any
//	tuple                  Tuple
//	dict                   *Dict (ordered; keys of any hashable type)
//	set, frozenset         Set, FrozenSet
//	managers.Token         *Token
//	an allowlisted exception  *Exception
//
// An object referenced twice in the pickle (Python's memo) is one Go
// object: the same []any or *Dict. A list that contains itself decodes
// to a []any that contains itself. [Equal] compares decoded values as
// Python's == does, and [Repr] prints them as Python's repr does.
//
// Decoding into a typed Go value converts: bool, the integer types (with
// an overflow check), float32/64 (ints too), string, []byte and [N]byte
// (from bytes or bytearray), *big.Int and big.Int, slices and arrays (from
// a list, tuple, set or frozenset), maps (from a dict; the Go key type must
// be able to hold the keys), pointers (allocated; None leaves nil), and
// structs: from a dict with str keys, matched to the field's `pickle:"name"`
// tag, then its name, then its name ignoring case (unknown keys are
// ignored, `pickle:"-"` fields skipped); or from a tuple with one item per
// field, in order. None stores the zero value. A mismatch is a
// [*TypeError] naming the path. Interface fields take the decoded value.
//
// Marshal writes Go values as: nil and nil pointers as None; bool; every
// integer type and *big.Int/big.Int as int; float32/64 as float; string
// as str (it must be valid UTF-8); []byte and [N]byte as bytes; ByteArray
// as bytearray; other slices and arrays as list; Tuple as tuple; Set and
// FrozenSet; *Dict and maps as dict (map keys sorted when they are
// strings or numbers); structs as dict keyed by field name or tag; Token
// and allowlisted Exceptions as CPython writes them. Channels, functions,
// complex numbers and unsafe pointers are a [*UnsupportedTypeError].
//
// # Safety
//
// Unpickling in Python can run any function the pickle names. This
// decoder runs nothing and looks nothing up by name. A pickle may name
// only these globals, and each is a marker the decoder interprets itself
// with the arguments CPython gives it:
//
//	builtins.set, builtins.frozenset     protocols 2 and 3 write sets as set(list)
//	builtins.list                        list(list): a manager's dict views (keys(), items())
//	builtins.bytearray, builtins.bytes   bytearray(bytes), bytearray(str, "latin1"), bytes()
//	_codecs.encode                       protocol 2 writes bytes as encode(str, "latin1")
//	multiprocessing.managers.Token       NEWOBJ with no arguments, then BUILD (typeid, address, id)
//	multiprocessing.managers.RemoteError, queue.Empty (_queue.Empty), queue.Full,
//	and the builtins exceptions (KeyError, ValueError, OSError, ...)
//	                                     called with their args; BUILD may add a dict
//
// (__builtin__, exceptions and Queue, the Python 2 names protocol 2 uses,
// are read as builtins and queue.) Any other global, or an allowed one used
// otherwise (a class left as a value, called with other arguments, created
// with NEWOBJ), is refused with a [*GlobalError] (errors.Is
// [ErrForbiddenGlobal]). Persistent ids, the extension registry,
// out-of-band buffers, INST and OBJ, and the protocol 0 text opcodes are
// refused with [ErrUnsupported].
//
// Every size is bounded, and every bound is an error, never a panic or an
// allocation of what the input announces:
//   - the pickle's length ([MaxSize], default 64 MiB), checked before
//     decoding and while encoding; a length inside the pickle is checked
//     against the bytes left before anything is allocated;
//   - the nesting depth of containers and of MARKs ([MaxDepth], default
//     1000), on read and on write, so a cycle of Go pointers fails to
//     encode instead of looping;
//   - the number of values a pickle makes ([MaxItems], default 2^21):
//     decoding takes at most about 150 bytes a value plus a copy of each
//     str and bytes, so the defaults bound it near 300 MiB;
//   - the memo ([MaxMemo], default 2^20 entries);
//   - the work of copying a decoded value into typed Go values, a few
//     times the input's length: a pickle that references one list many
//     times is small, and so is its decoded graph, but copying it into Go
//     value types would not be.
//
// Limit errors are a [*LimitError] (errors.Is [ErrLimit]). Every decoding
// error is a [*DecodeError] with the offset and opcode. An error leaves
// the ipc.Conn it came through usable: the frame was read whole.
//
// A Codec is safe for concurrent use; Marshal and Unmarshal at package
// level use one with the defaults.
package pickle
