// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"sync"
)

// Bounds on what one remote error carries.
const (
	// MaxIdentities is how many registered errors of one chain travel.
	MaxIdentities = 16
	// MaxValueSize bounds the encoding of one typed error's value; a
	// larger one travels as text only.
	MaxValueSize = 4 << 10
	// maxDepth bounds the walk of an error tree.
	maxDepth = 64
)

type typeEntry struct {
	key    string
	decode func([]byte) (error, bool)
}

var registry struct {
	sync.RWMutex
	sentinels []error          // in registration order
	byErr     map[error]string // sentinel -> key
	byKey     map[string]error // key -> sentinel
	types     map[reflect.Type]*typeEntry
	typeKeys  map[string]*typeEntry
}

// The standard sentinels are registered on first use, not at package
// initialisation: a child process pays for it only if it reports an error
// (every child links this package, and its start-up is on the critical
// path of every Process.Start).
var stdOnce sync.Once

func registerStd() {
	stdOnce.Do(func() {
		for _, err := range []error{
			context.Canceled, context.DeadlineExceeded, io.EOF, io.ErrUnexpectedEOF,
			fs.ErrNotExist, fs.ErrExist, fs.ErrPermission, os.ErrDeadlineExceeded,
			errors.ErrUnsupported,
		} {
			register(err)
		}
	})
}

// sentinelKey names a sentinel the same way in every process of a binary:
// its dynamic type and its text.
func sentinelKey(err error) string { return "s:" + typeName(reflect.TypeOf(err)) + ":" + err.Error() }

func typeName(t reflect.Type) string {
	if t.Kind() == reflect.Pointer && t.Elem().Name() != "" {
		return "*" + t.Elem().PkgPath() + "." + t.Elem().Name()
	}
	if t.Name() != "" {
		return t.PkgPath() + "." + t.Name()
	}
	return t.String()
}

// Register makes a sentinel error keep its identity across processes and
// returns it, so that it can be declared and registered at once:
//
//	var ErrNotFound = remote.Register(errors.New("store: not found"))
//
// Call it at package level (or in init), so that every process of the
// program registers the same sentinels. Two sentinels of the same type and
// text cannot be told apart on the wire: registering a second one panics.
// err must be comparable (errors.New's values are).
func Register(err error) error {
	registerStd()
	return register(err)
}

func register(err error) error {
	if err == nil {
		panic("remote: Register(nil)")
	}
	if !reflect.TypeOf(err).Comparable() {
		panic(fmt.Sprintf("remote: Register(%T): a sentinel must be comparable", err))
	}
	key := sentinelKey(err)
	registry.Lock()
	defer registry.Unlock()
	if registry.byKey == nil {
		registry.byErr = map[error]string{}
		registry.byKey = map[string]error{}
	}
	if old, ok := registry.byKey[key]; ok {
		if old == err {
			return err
		}
		panic(fmt.Sprintf("remote: Register: another %T with the text %q is registered; give sentinels distinct texts", err, err.Error()))
	}
	registry.byKey[key] = err
	registry.byErr[err] = key
	registry.sentinels = append(registry.sentinels, err)
	return err
}

// RegisterType makes the error type T keep its identity across processes:
// a T found in a remote error's chain is rebuilt on the receiving side
// from its exported fields (gob), so that errors.As matches it. T is
// usually a pointer to a struct. Call it at package level or in init.
// Fields that gob cannot encode (interfaces of unregistered types,
// channels, functions) make that value travel as text only.
func RegisterType[T error]() {
	t := reflect.TypeFor[T]()
	key := "t:" + typeName(t)
	e := &typeEntry{key: key, decode: func(b []byte) (error, bool) {
		var v T
		if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&v); err != nil {
			return nil, false
		}
		if rv := reflect.ValueOf(&v).Elem(); rv.Kind() == reflect.Pointer && rv.IsNil() {
			return nil, false
		}
		return v, true
	}}
	registry.Lock()
	defer registry.Unlock()
	if registry.types == nil {
		registry.types = map[reflect.Type]*typeEntry{}
		registry.typeKeys = map[string]*typeEntry{}
	}
	if _, ok := registry.typeKeys[key]; ok {
		return
	}
	registry.types[t] = e
	registry.typeKeys[key] = e
}

// identity is one registered error found in a chain.
type identity struct {
	key   string
	value []byte
}

// identities walks err's tree and returns the registered errors in it:
// every registered sentinel that errors.Is matches, and every value of a
// registered type, outermost first, at most MaxIdentities.
func identities(err error) []identity {
	registerStd()
	registry.RLock()
	defer registry.RUnlock()
	var out []identity
	seen := map[string]bool{}
	add := func(id identity) {
		if len(out) < MaxIdentities && !seen[id.key] {
			seen[id.key] = true
			out = append(out, id)
		}
	}
	if len(registry.types) > 0 {
		walk(err, 0, func(e error) {
			te, ok := registry.types[reflect.TypeOf(e)]
			if !ok {
				return
			}
			var buf bytes.Buffer
			if gob.NewEncoder(&buf).Encode(e) != nil || buf.Len() > MaxValueSize {
				return
			}
			add(identity{key: te.key, value: buf.Bytes()})
		})
	}
	for _, s := range registry.sentinels {
		if errors.Is(err, s) {
			add(identity{key: registry.byErr[s]})
		}
	}
	return out
}

func walk(err error, depth int, f func(error)) {
	if err == nil || depth > maxDepth {
		return
	}
	f(err)
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		walk(u.Unwrap(), depth+1, f)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walk(e, depth+1, f)
		}
	}
}

// rebuild turns wire identities back into this process's errors; keys it
// does not know, and values that do not decode, are skipped.
func rebuild(ids []identity) []error {
	if len(ids) == 0 {
		return nil
	}
	registerStd()
	registry.RLock()
	defer registry.RUnlock()
	var out []error
	for i, id := range ids {
		if i == MaxIdentities {
			break
		}
		if s, ok := registry.byKey[id.key]; ok {
			out = append(out, s)
			continue
		}
		if te, ok := registry.typeKeys[id.key]; ok && len(id.value) <= MaxValueSize {
			if v, ok := te.decode(id.value); ok {
				out = append(out, v)
			}
		}
	}
	return out
}
