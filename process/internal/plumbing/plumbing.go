// SPDX-License-Identifier: Apache-2.0

// Package plumbing holds the state that package process and its plumbing
// subpackage (process/starter) share: the init hooks, the providers of
// inherited handles, what a child received, and the child runner. It is
// plain data, so neither package depends on the other's initialisation.
package plumbing

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	pb "github.com/multiproc/multiproc/proto/process/v1"
)

// Initialized is set by the first call of process.Init: a function
// registered after it is unknown to the children, which run Init before
// main's code (process.Register and pool.Register panic then).
var Initialized atomic.Bool

// InitHooks maps an environment variable to the function Init runs in its
// place when it is set (starter.RegisterInitHook).
var InitHooks struct {
	sync.Mutex
	M map[string]func(string)
}

// Provider gives every new child a handle under Key
// (starter.RegisterInherited).
type Provider struct {
	Key string
	Fn  func() (files []*os.File, desc []byte, err error)
}

// Inherited is the providers, and in a child what it received from them.
var Inherited struct {
	sync.Mutex
	Providers []Provider
	Received  map[string]*pb.HandleRef
	Table     []*os.File
}

// RunChild runs a child from its bootstrap message and files and exits; it
// is package process's, set by its initialisation, and called through
// starter.RunChild by a Starter's warm process (inside Init, so after
// every package is initialised).
var RunChild func(bootstrap []byte, files []*os.File)

// PrepareChild does, ahead of a bootstrap message, what RunChild needs that
// does not depend on it (package process's, set by its initialisation;
// starter.PrepareChild calls it).
var PrepareChild func()

// ErrBadIndex is a file index out of the table, or used twice.
var ErrBadIndex = errors.New("file index out of range or used twice")

// TakeFiles takes the files at idx out of table (each may be taken once).
func TakeFiles(table []*os.File, idx []uint32) ([]*os.File, error) {
	files := make([]*os.File, len(idx))
	for i, x := range idx {
		if int(x) >= len(table) || table[x] == nil || slices.Contains(idx[:i], x) {
			return nil, fmt.Errorf("%w: %d", ErrBadIndex, x)
		}
		files[i] = table[x]
	}
	for _, x := range idx {
		table[x] = nil
	}
	return files, nil
}
