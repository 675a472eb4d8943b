// SPDX-License-Identifier: Apache-2.0

package shm

import (
	"errors"
	"fmt"
	"reflect"
)

var (
	// ErrClosed is returned by operations on a closed Segment, Arena,
	// Value, Array or ShareableList.
	ErrClosed = errors.New("shm: closed")

	// ErrInvalidSize is returned for a zero or negative size (CPython's
	// ValueError for create=True with size <= 0), and when an attached
	// object is too small for what it should hold.
	ErrInvalidSize = errors.New("shm: invalid size")

	// ErrInvalidName is returned for a name that cannot be a POSIX shared
	// memory name: empty (after an optional leading "/"), containing "/"
	// or NUL, "." or "..", or longer than 255 bytes.
	ErrInvalidName = errors.New("shm: invalid name")

	// ErrAnonymous is returned by Unlink on an anonymous (memfd) segment,
	// which has no name and is freed by the kernel when its last user goes.
	ErrAnonymous = errors.New("shm: anonymous segment has no name")

	// ErrArenaFull is returned by Arena.Alloc when no free range is large
	// enough.
	ErrArenaFull = errors.New("shm: arena full")

	// ErrUnsupportedType is matched (errors.Is) by the *TypeError returned
	// when Value or Array is given a type that holds pointers.
	ErrUnsupportedType = errors.New("shm: type is not fixed-size and pointer-free")

	// ErrIndex is returned for an index out of range of a ShareableList.
	ErrIndex = errors.New("shm: index out of range")

	// ErrItemTooLarge is CPython's "bytes/str item exceeds available
	// storage": a string or bytes value longer than its slot, or (Go only)
	// a string that CPython's slot sizing would truncate.
	ErrItemTooLarge = errors.New("shm: bytes/str item exceeds available storage")

	// ErrCorrupt is returned when a ShareableList segment does not hold a
	// valid layout (bad item count, offsets, format or code).
	ErrCorrupt = errors.New("shm: corrupt shareable list")

	// ErrBadHandle is returned by MultiprocAttach when the files or the
	// descriptor do not describe a shm object.
	ErrBadHandle = errors.New("shm: bad handle")
)

// TypeError reports a type that cannot live in shared memory, naming the
// offending field. It matches ErrUnsupportedType.
type TypeError struct {
	Type reflect.Type // the type given to Value or Array
	Path string       // the offending part, e.g. "Foo.Names[0]" ("" for Type itself)
	Kind reflect.Kind // its kind: String, Pointer, Slice, Map, ...
}

func (e *TypeError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("shm: type %v cannot be shared: it is a %v, which holds a pointer", e.Type, e.Kind)
	}
	return fmt.Sprintf("shm: type %v cannot be shared: %s is a %v, which holds a pointer", e.Type, e.Path, e.Kind)
}

// Is makes errors.Is(err, ErrUnsupportedType) true.
func (e *TypeError) Is(target error) bool { return target == ErrUnsupportedType }
