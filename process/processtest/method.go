// SPDX-License-Identifier: Apache-2.0

package processtest

import (
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/multiproc/multiproc/process"
)

// A Method is a start method under test: a name, unique in the binary,
// and a function that makes a new Starter for it. Make one with
// RegisterMethod at package level, like a process.Func, so that the
// children of the test binary (which runs again as every child) can make
// the same Starter to start grandchildren, and helper programs can make it
// from the name alone.
type Method struct {
	name       string
	newStarter func() (process.Starter, error)
}

var methods struct {
	sync.Mutex
	m map[string]*Method
}

// RegisterMethod registers newStarter under name and returns the Method
// to give to TestStarter. Call it at package level (var m =
// processtest.RegisterMethod(...)), never conditionally.
//
// newStarter is called once for each subtest of the suite, in the test
// process, and in the children that start processes of their own: each
// call must return a Starter ready for use, and one that nobody else uses
// (the suite checks for leaked descriptors and processes around each
// subtest). When the Starter is an io.Closer, the suite closes it at the
// end of the subtest, and the children close theirs before they return.
//
// RegisterMethod panics when name is empty or already registered, or
// newStarter is nil.
func RegisterMethod(name string, newStarter func() (process.Starter, error)) *Method {
	if name == "" || newStarter == nil {
		panic(fmt.Sprintf("processtest: RegisterMethod(%q): empty name or nil function", name))
	}
	methods.Lock()
	defer methods.Unlock()
	if _, dup := methods.m[name]; dup {
		panic(fmt.Sprintf("processtest: RegisterMethod(%q): name already registered", name))
	}
	if methods.m == nil {
		methods.m = map[string]*Method{}
	}
	m := &Method{name: name, newStarter: newStarter}
	methods.m[name] = m
	return m
}

// Spawn is process.Spawn as a Method.
var Spawn = RegisterMethod("spawn", func() (process.Starter, error) { return process.Spawn, nil })

// Name returns the name m was registered under.
func (m *Method) Name() string { return m.name }

// New returns a new Starter, and a function that closes it when it is an
// io.Closer (and does nothing otherwise).
func (m *Method) New() (process.Starter, func() error, error) {
	s, err := m.newStarter()
	if err != nil {
		return nil, nil, fmt.Errorf("processtest: method %q: %w", m.name, err)
	}
	if s == nil {
		return nil, nil, fmt.Errorf("processtest: method %q made a nil Starter", m.name)
	}
	closeFn := func() error { return nil }
	if c, ok := s.(io.Closer); ok {
		closeFn = c.Close
	}
	return s, closeFn, nil
}

// lookupMethod returns the Method registered under name.
func lookupMethod(name string) (*Method, error) {
	methods.Lock()
	m, ok := methods.m[name]
	methods.Unlock()
	if !ok {
		return nil, fmt.Errorf("processtest: no method %q registered in this binary (register it at package level)", name)
	}
	return m, nil
}

// newStarter makes a Starter of the method registered under name, for a
// child or a helper program.
func newStarter(name string) (process.Starter, func() error, error) {
	m, err := lookupMethod(name)
	if err != nil {
		return nil, nil, err
	}
	return m.New()
}

// starterT makes a Starter of m for t, closed when t ends (before the
// leak checks that the caller registered earlier run).
func starterT(t *testing.T, m *Method) process.Starter {
	t.Helper()
	s, closeFn, err := m.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := closeFn(); err != nil {
			t.Errorf("closing the %s Starter: %v", m.name, err)
		}
	})
	return s
}
