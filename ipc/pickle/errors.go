// SPDX-License-Identifier: Apache-2.0

package pickle

import (
	"errors"
	"fmt"
	"reflect"
)

var (
	// ErrMalformed is returned for input that is not a well-formed pickle:
	// truncated, an unknown opcode, a stack or mark misuse, an unhashable
	// dict key, invalid UTF-8 in a str.
	ErrMalformed = errors.New("pickle: malformed pickle")
	// ErrUnsupported is returned for a well-formed pickle that uses an
	// opcode this package does not implement: persistent ids, the extension
	// registry, out-of-band buffers, protocol 0 and 1 text opcodes, INST
	// and OBJ.
	ErrUnsupported = errors.New("pickle: unsupported opcode")
	// ErrForbiddenGlobal is returned for a global outside the allowlist
	// (see the package documentation), or an allowlisted one used in a way
	// CPython never uses it. Nothing was looked up or called.
	ErrForbiddenGlobal = errors.New("pickle: forbidden global")
	// ErrLimit is returned when input or output goes past a bound (size,
	// nesting depth, memo entries, work).
	ErrLimit = errors.New("pickle: limit exceeded")
)

// DecodeError reports where in the pickle decoding failed. Err wraps one
// of ErrMalformed, ErrUnsupported, ErrForbiddenGlobal or ErrLimit (and
// possibly a *GlobalError or *LimitError).
type DecodeError struct {
	Offset int   // byte offset of the opcode that failed
	Op     byte  // that opcode (0 when the error is not an opcode's)
	Err    error // what went wrong
}

func (e *DecodeError) Error() string {
	if e.Op == 0 {
		return fmt.Sprintf("pickle: at byte %d: %v", e.Offset, trimPrefix(e.Err))
	}
	return fmt.Sprintf("pickle: at byte %d (opcode %#02x): %v", e.Offset, e.Op, trimPrefix(e.Err))
}

func (e *DecodeError) Unwrap() error { return e.Err }

// GlobalError names a global the decoder refused.
type GlobalError struct {
	Module, Name string
	Reason       string // why, when the global is allowlisted but misused
}

func (e *GlobalError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("pickle: global %s.%s: %s", e.Module, e.Name, e.Reason)
	}
	return fmt.Sprintf("pickle: global %s.%s is not allowed", e.Module, e.Name)
}

func (e *GlobalError) Unwrap() error { return ErrForbiddenGlobal }

// LimitError reports which bound was exceeded.
type LimitError struct {
	Limit string // "size", "depth", "memo", "items" or "work"
	Max   int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("pickle: %s limit of %d exceeded", e.Limit, e.Max)
}

func (e *LimitError) Unwrap() error { return ErrLimit }

// TypeError reports a decoded Python value that cannot be stored in the
// Go value Unmarshal was given.
type TypeError struct {
	Python string       // the Python type, e.g. "str"
	Go     reflect.Type // the Go type it was to go into
	Path   string       // where, e.g. ".Args[1]" or "[\"job\"]"
	Reason string       // e.g. "overflows int8"
}

func (e *TypeError) Error() string {
	msg := fmt.Sprintf("pickle: cannot store Python %s in Go %v", e.Python, e.Go)
	if e.Path != "" {
		msg += " at " + e.Path
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// UnsupportedTypeError reports a Go value Marshal has no Python form for.
type UnsupportedTypeError struct {
	Type   reflect.Type
	Reason string
}

func (e *UnsupportedTypeError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("pickle: cannot encode Go %v: %s", e.Type, e.Reason)
	}
	return fmt.Sprintf("pickle: cannot encode Go %v", e.Type)
}

func trimPrefix(err error) string {
	s := err.Error()
	if len(s) > 8 && s[:8] == "pickle: " {
		return s[8:]
	}
	return s
}
