// SPDX-License-Identifier: Apache-2.0

// Handles in an Initializer's argument: a Lock, a Queue, a shared memory
// Value, an *ipc.Conn, a manager proxy... (Python's
// Pool(initializer=init, initargs=(lock, queue))). The pool keeps the
// handle values and hands them again, as a Process argument (handleSet),
// to every worker it starts: the first ones, replacements and recycled
// workers alike.

package pool

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"reflect"

	"github.com/multiproc/multiproc/ipc/remote"
	commonpb "github.com/multiproc/multiproc/proto/common/v1"
)

// handler and attacher are process's handle interfaces (process/register.go).
type handler interface {
	MultiprocHandle() (files []*os.File, desc []byte, err error)
}

type attacher interface {
	MultiprocAttach(files []*os.File, desc []byte) error
}

var attacherType = reflect.TypeFor[attacher]()

// ErrHandleArg is the error of a task whose argument type carries handles
// other than shared memory's (a Lock, a Queue, an *ipc.Conn, a manager
// proxy): those reach workers through the Initializer, not through task
// arguments. Handles of package shm do travel in task arguments (see the
// package documentation, "Handles").
var ErrHandleArg = errors.New("pool: only shared-memory handles (package shm) travel in task arguments; pass others to the Initializer and keep them in a package variable")

const (
	// maxInitHandles bounds the handles of an Initializer's argument.
	maxInitHandles = 256
	// maxHandleFiles bounds the files of one handle.
	maxHandleFiles = 64
)

// isHandleType reports whether t is a handle: *T with MultiprocAttach.
func isHandleType(t reflect.Type) bool {
	return t.Kind() == reflect.Pointer && t.Implements(attacherType)
}

// handleShape describes where the handles of a type are: the type is a
// handle, or a struct (or a pointer to one) with handle fields, nested
// structs included. A nil shape means the type carries no handles.
type handleShape struct {
	t      reflect.Type
	handle bool           // t is a handle
	ptr    bool           // t is *S for a struct S described by fields
	fields []*handleShape // per field of the struct (nil: a plain field)
	plain  []int          // indexes of the struct's plain exported fields
}

// shapeOf returns t's handle shape, nil if t carries no handles, or an
// error if it carries them where they cannot travel (in a slice, a map,
// an array or an unexported field).
func shapeOf(t reflect.Type) (*handleShape, error) {
	return shapeAt(t, t.String(), 0)
}

func shapeAt(t reflect.Type, path string, depth int) (*handleShape, error) {
	if depth > 16 {
		return nil, nil
	}
	if isHandleType(t) {
		return &handleShape{t: t, handle: true}, nil
	}
	st, ptr := t, false
	if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		st, ptr = t.Elem(), true
	}
	switch st.Kind() {
	case reflect.Struct:
		s := &handleShape{t: t, ptr: ptr, fields: make([]*handleShape, st.NumField())}
		found := false
		for i := range st.NumField() {
			f := st.Field(i)
			fs, err := shapeAt(f.Type, path+"."+f.Name, depth+1)
			if err != nil {
				return nil, err
			}
			switch {
			case fs != nil && !f.IsExported():
				return nil, fmt.Errorf("pool: %s: an unexported field holds a handle; export it", path+"."+f.Name)
			case fs != nil:
				s.fields[i], found = fs, true
			case f.IsExported():
				s.plain = append(s.plain, i)
			}
		}
		if !found {
			return nil, nil
		}
		return s, nil
	case reflect.Slice, reflect.Array, reflect.Map:
		if s, err := shapeAt(st.Elem(), path+"[]", depth+1); err != nil || s != nil {
			if err == nil {
				err = fmt.Errorf("pool: %s: handles in a %v cannot travel; give each its own struct field", path, st.Kind())
			}
			return nil, err
		}
	}
	return nil, nil
}

// plainType is the struct of the plain fields of s and of its nested
// structs, in the order split and join visit them: gob encodes them
// together.
func (s *handleShape) plainType() reflect.Type {
	var fs []reflect.StructField
	s.walkPlain(func(t reflect.Type) {
		fs = append(fs, reflect.StructField{Name: fmt.Sprintf("F%d", len(fs)), Type: t})
	})
	return reflect.StructOf(fs)
}

func (s *handleShape) walkPlain(fn func(reflect.Type)) {
	if s.handle {
		return
	}
	st := s.t
	if s.ptr {
		st = st.Elem()
	}
	for _, i := range s.plain {
		fn(st.Field(i).Type)
	}
	for _, f := range s.fields {
		if f != nil {
			f.walkPlain(fn)
		}
	}
}

// split takes v (of type s.t) apart: its handles, in order (nil for a
// nil one), and the gob encoding of its plain fields.
func (s *handleShape) split(v reflect.Value) (hs []handler, plain []byte, err error) {
	pv := reflect.New(s.plainType()).Elem()
	n := 0
	var walk func(s *handleShape, v reflect.Value)
	walk = func(s *handleShape, v reflect.Value) {
		if s.handle {
			if v.IsNil() {
				hs = append(hs, nil)
			} else {
				h, _ := v.Interface().(handler)
				if h == nil {
					err = fmt.Errorf("pool: a %v has MultiprocAttach but no MultiprocHandle method", s.t)
				}
				hs = append(hs, h)
			}
			return
		}
		nilPtr := s.ptr && v.IsNil()
		if s.ptr && !nilPtr {
			v = v.Elem()
		}
		for _, i := range s.plain {
			if !nilPtr {
				pv.Field(n).Set(v.Field(i))
			}
			n++
		}
		for i, f := range s.fields {
			if f == nil {
				continue
			}
			if nilPtr {
				walk(f, reflect.Zero(f.t))
			} else {
				walk(f, v.Field(i))
			}
		}
	}
	walk(s, v)
	if err != nil {
		return nil, nil, err
	}
	if len(hs) > maxInitHandles {
		return nil, nil, fmt.Errorf("pool: %d handles, more than %d", len(hs), maxInitHandles)
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).EncodeValue(pv); err != nil {
		return nil, nil, fmt.Errorf("pool: encoding the plain fields: %w", err)
	}
	return hs, buf.Bytes(), nil
}

// join rebuilds a value of type s.t from its plain fields' encoding and
// the handles received (attaching each to a new zero value).
func (s *handleShape) join(plain []byte, got []gotHandle) (reflect.Value, error) {
	return s.joinWith(plain, got, nil)
}

// joinWith is join that calls attached (when not nil) with each handle it
// attached. Handles not attached have had their files closed; those
// attached own theirs.
func (s *handleShape) joinWith(plain []byte, got []gotHandle, attached func(reflect.Value)) (reflect.Value, error) {
	pv := reflect.New(s.plainType())
	if err := gob.NewDecoder(bytes.NewReader(plain)).DecodeValue(pv); err != nil {
		for _, g := range got {
			closeFiles(g.files)
		}
		return reflect.Value{}, fmt.Errorf("pool: decoding the plain fields: %w", err)
	}
	pv = pv.Elem()
	n, k := 0, 0
	var err error
	var build func(s *handleShape) reflect.Value
	build = func(s *handleShape) reflect.Value {
		if s.handle {
			v := reflect.Zero(s.t)
			if k >= len(got) {
				err = fmt.Errorf("pool: %d handles received, more expected", len(got))
				return v
			}
			g := got[k]
			k++
			if g.kind == "" {
				return v
			}
			if g.kind != s.t.String() {
				closeFiles(g.files)
				err = fmt.Errorf("pool: a handle of type %s received where a %v is expected", g.kind, s.t)
				return v
			}
			v = reflect.New(s.t.Elem())
			if aerr := v.Interface().(attacher).MultiprocAttach(g.files, g.desc); aerr != nil {
				err = fmt.Errorf("pool: attaching a %v: %w", s.t, aerr)
			} else if attached != nil {
				attached(v)
			}
			return v
		}
		st := s.t
		if s.ptr {
			st = st.Elem()
		}
		v := reflect.New(st).Elem()
		for _, i := range s.plain {
			v.Field(i).Set(pv.Field(n))
			n++
		}
		for i, f := range s.fields {
			if f != nil {
				v.Field(i).Set(build(f))
			}
		}
		if s.ptr {
			return v.Addr()
		}
		return v
	}
	v := build(s)
	if err == nil && k != len(got) {
		for _, g := range got[k:] {
			closeFiles(g.files)
		}
		err = fmt.Errorf("pool: %d handles received, %d expected", len(got), k)
	}
	return v, err
}

// handleSet carries the handles of an Initializer's argument to a worker
// as one Process argument. In the pool it holds the handle values
// (MultiprocHandle is called again at each worker start); in the worker
// it holds what arrived, attached by the initializer's task (join).
type handleSet struct {
	hs  []handler
	got []gotHandle
}

type gotHandle struct {
	kind  string // the handle's type; "" for a nil handle
	files []*os.File
	desc  []byte
}

// MultiprocHandle describes every handle of the set: their files, one
// after the other, and per handle its type, number of files and
// descriptor.
func (s *handleSet) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	desc = binary.AppendUvarint(nil, uint64(len(s.hs)))
	for _, h := range s.hs {
		var kind string
		var fs []*os.File
		var d []byte
		if h != nil {
			if fs, d, err = h.MultiprocHandle(); err != nil {
				closeFiles(files)
				return nil, nil, fmt.Errorf("pool: initializer argument: %T: %w", h, err)
			}
			kind = reflect.TypeOf(h).String()
		}
		files = append(files, fs...)
		desc = binary.AppendUvarint(desc, uint64(len(fs)))
		desc = binary.AppendUvarint(desc, uint64(len(kind)))
		desc = append(desc, kind...)
		desc = binary.AppendUvarint(desc, uint64(len(d)))
		desc = append(desc, d...)
	}
	return files, desc, nil
}

var errBadHandleSet = errors.New("pool: bad handle set")

// MultiprocAttach takes the files and descriptors of the handles; the
// initializer's task attaches them.
func (s *handleSet) MultiprocAttach(files []*os.File, desc []byte) error {
	got, err := parseHandleSet(len(files), desc)
	if err != nil {
		closeFiles(files)
		return err
	}
	for i := range got {
		n := len(got[i].files)
		got[i].files, files = files[:n:n], files[n:]
	}
	s.got = got
	return nil
}

// parseHandleSet decodes a handle set's descriptor; files of each
// handle are left with their length only (nil entries).
func parseHandleSet(nfiles int, b []byte) ([]gotHandle, error) {
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	bytesOf := func() ([]byte, bool) {
		n, ok := uv()
		if !ok || n > uint64(len(b)) {
			return nil, false
		}
		v := b[:n:n]
		b = b[n:]
		return v, true
	}
	count, ok := uv()
	if !ok || count > maxInitHandles {
		return nil, errBadHandleSet
	}
	got := make([]gotHandle, count)
	total := 0
	for i := range got {
		nf, ok := uv()
		if !ok || nf > maxHandleFiles {
			return nil, errBadHandleSet
		}
		kind, ok1 := bytesOf()
		d, ok2 := bytesOf()
		if !ok1 || !ok2 || (len(kind) == 0 && (nf > 0 || len(d) > 0)) {
			return nil, errBadHandleSet
		}
		total += int(nf)
		got[i] = gotHandle{kind: string(kind), files: make([]*os.File, nf), desc: d}
	}
	if len(b) > 0 || total != nfiles {
		return nil, errBadHandleSet
	}
	return got, nil
}

// close closes the files of handles not attached.
func (s *handleSet) close() {
	for _, g := range s.got {
		closeFiles(g.files)
	}
	s.got = nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// runInitWithHandles is the worker side of an Initializer whose argument
// carries handles: it rebuilds the argument and runs the task once.
func (t *Task[A, R]) runInitWithHandles(ctx context.Context, plain []byte, got []gotHandle) *commonpb.RemoteError {
	v, err := t.info.shape.join(plain, got)
	if err != nil {
		return remote.Capture(err)
	}
	_, perr, err := call(ctx, t.fn, v.Interface().(A))
	if perr != nil {
		return perr
	}
	if err != nil {
		return remote.Capture(err)
	}
	return nil
}
