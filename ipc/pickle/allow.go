// SPDX-License-Identifier: Apache-2.0

package pickle

import (
	"slices"
	"unicode/utf8"
)

// The allowlist: the only globals a pickle may name. Each is a marker the
// decoder interprets itself; no Go or Python code is looked up by name.
//
//   - builtins.set, builtins.frozenset, builtins.bytearray, builtins.bytes
//     and _codecs.encode: what protocols 2 and 3 use for sets, bytearrays
//     and bytes (and protocol 4 for bytearray), called with the arguments
//     CPython gives them;
//   - builtins.list, called with one list: multiprocessing.managers makes
//     dict views (d.keys(), items(), values()) pickle that way.
//   - multiprocessing.managers.Token: created with NEWOBJ and no arguments,
//     then given its (typeid, address, id) state by BUILD.
//   - the exception classes in exceptionNames and
//     multiprocessing.managers.RemoteError: called with their args (REDUCE),
//     optionally given a dict of attributes (BUILD). The manager protocol
//     returns them in '#ERROR' replies.
//
// The Python 2 module names that CPython writes for protocols 0 to 2 are
// read as CPython reads them: __builtin__ and exceptions mean builtins,
// Queue means queue.

type globalKind uint8

const (
	gList globalKind = iota + 1
	gSet
	gFrozenSet
	gByteArray
	gBytes
	gCodecsEncode
	gToken
	gException
)

type global struct {
	module, name string
	kind         globalKind
}

// exceptionNames are the builtins exception classes a pickle may name.
var exceptionNames = []string{
	"ArithmeticError", "AssertionError", "AttributeError", "BaseException",
	"BlockingIOError", "BrokenPipeError", "BufferError", "ChildProcessError",
	"ConnectionAbortedError", "ConnectionError", "ConnectionRefusedError",
	"ConnectionResetError", "EOFError", "Exception", "FileExistsError",
	"FileNotFoundError", "FloatingPointError", "ImportError",
	"IndexError", "InterruptedError", "IsADirectoryError", "KeyError",
	"KeyboardInterrupt", "LookupError", "MemoryError", "ModuleNotFoundError",
	"NameError", "NotADirectoryError", "NotImplementedError", "OSError",
	"OverflowError", "PermissionError", "ProcessLookupError", "RecursionError",
	"ReferenceError", "RuntimeError", "StopIteration", "SystemError",
	"TimeoutError", "TypeError", "UnboundLocalError", "UnicodeError",
	"ValueError", "ZeroDivisionError",
}

// resolveGlobal maps a (module, name) pair to its allowlist entry.
func resolveGlobal(module, name string) (global, error) {
	switch module {
	case "__builtin__", "exceptions":
		module = "builtins"
	case "Queue":
		module = "queue"
	}
	g := global{module: module, name: name}
	switch module + "." + name {
	case "builtins.list":
		g.kind = gList
	case "builtins.set":
		g.kind = gSet
	case "builtins.frozenset":
		g.kind = gFrozenSet
	case "builtins.bytearray":
		g.kind = gByteArray
	case "builtins.bytes":
		g.kind = gBytes
	case "_codecs.encode":
		g.kind = gCodecsEncode
	case "multiprocessing.managers.Token":
		g.kind = gToken
	case "multiprocessing.managers.RemoteError", "_queue.Empty", "queue.Empty", "queue.Full":
		g.kind = gException
	default:
		if module == "builtins" && slices.Contains(exceptionNames, name) {
			g.kind = gException
			break
		}
		return g, &GlobalError{Module: module, Name: name}
	}
	return g, nil
}

// allowedException reports whether Marshal may write this exception class.
func allowedException(module, name string) bool {
	g, err := resolveGlobal(module, name)
	return err == nil && g.kind == gException
}

// call applies an allowlisted callable to its arguments (REDUCE).
func (d *decoder) call(g global, args []any) (any, error) {
	misuse := func(why string) error {
		return &GlobalError{Module: g.module, Name: g.name, Reason: why}
	}
	switch g.kind {
	case gList, gSet, gFrozenSet:
		var items []any
		switch len(args) {
		case 0:
		case 1:
			switch x := args[0].(type) {
			case *pyList:
				items = x.items
			case *pyTuple:
				items = x.items
			default:
				return nil, misuse("called with a " + pyTypeName(args[0]))
			}
		default:
			return nil, misuse("called with more than one argument")
		}
		if g.kind == gList {
			return &pyList{items: append([]any{}, items...)}, nil
		}
		if g.kind == gSet {
			s := &pySet{}
			return s, d.addItems(s, items)
		}
		items, err := d.dedup(items)
		return &pyFrozen{items: items}, err
	case gByteArray, gBytes:
		var b []byte
		switch len(args) {
		case 0:
			b = []byte{}
		case 1:
			x, ok := args[0].([]byte)
			if !ok {
				return nil, misuse("called with a " + pyTypeName(args[0]))
			}
			b = x
		case 2:
			var err error
			if b, err = latin1(args); err != nil {
				return nil, misuse(err.Error())
			}
		default:
			return nil, misuse("called with more than two arguments")
		}
		if g.kind == gByteArray {
			return ByteArray(b), nil
		}
		return b, nil
	case gCodecsEncode:
		b, err := latin1(args)
		if err != nil {
			return nil, misuse(err.Error())
		}
		return b, nil
	case gException:
		return &Exception{Module: g.module, Name: g.name, Args: Tuple(args)}, nil
	}
	return nil, misuse("cannot be called")
}

// latin1 applies the (str, "latin1") encoding CPython uses for bytes in
// protocols 0 to 2.
func latin1(args []any) ([]byte, error) {
	if len(args) != 2 {
		return nil, errString("takes a str and an encoding")
	}
	s, ok1 := args[0].(string)
	enc, ok2 := args[1].(string)
	if !ok1 || !ok2 || (enc != "latin1" && enc != "latin-1") {
		return nil, errString("takes a str and the encoding latin1")
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff || r == utf8.RuneError {
			return nil, errString("str is not latin1")
		}
		b = append(b, byte(r))
	}
	return b, nil
}

type errString string

func (e errString) Error() string { return string(e) }
