// SPDX-License-Identifier: Apache-2.0

package starter

import (
	"fmt"
	"os"
	"strings"

	"github.com/multiproc/multiproc/process/internal/plumbing"
)

// RunChild runs a child from its bootstrap message and inherited-file
// table, then exits; it never returns. A Starter whose children are not
// exec'd (a forkserver's warm process, waiting in an init hook) calls it
// with what it received; spawned children get there through
// process.Init. It takes ownership of files.
func RunChild(bootstrap []byte, files []*os.File) {
	plumbing.RunChild(bootstrap, files)
}

// PrepareChild does, in a process that will become a child with RunChild,
// the part of the child's start-up that does not depend on the request:
// it starts the SIGTERM watcher, whose set-up (signal.Notify) is a round
// trip to the runtime's signal-mask thread, and runs parts of a child's
// start on throwaway descriptors (a status socket, a Conn handle), so that
// their code is mapped in this process before it is needed. A Starter's
// warm process calls it before it waits for its request, so that the
// child's start does not pay them. From then on SIGTERM ends the process as its default action
// would, until RunChild runs the function (which then sees its context
// cancelled, as in any child). RunChild calls it too; it is idempotent.
func PrepareChild() { plumbing.PrepareChild() }

// RegisterInitHook makes process.Init call run, in place of its own child
// start-up, when the environment variable name is set: Init unsets the
// variable and calls run with its value. run must not return: it ends by
// calling RunChild (or os.Exit). This is how a Starter in another module
// (the forkserver's) makes the processes it pre-starts wait, after the
// runtime and every package are initialised and before main runs any user
// code, for the request that turns them into a child; and how a module
// turns the program into a service of its own when asked (the cluster
// module's host agent). Call it from a package init function, so that it
// is registered before main calls Init. It panics when name is empty or
// already registered.
func RegisterInitHook(name string, run func(value string)) {
	if name == "" || name == "MULTIPROC_CHILD" || run == nil {
		panic(fmt.Sprintf("starter: RegisterInitHook(%q): bad name or nil function", name))
	}
	plumbing.InitHooks.Lock()
	defer plumbing.InitHooks.Unlock()
	if _, dup := plumbing.InitHooks.M[name]; dup {
		panic(fmt.Sprintf("starter: RegisterInitHook(%q): already registered", name))
	}
	if plumbing.InitHooks.M == nil {
		plumbing.InitHooks.M = map[string]func(string){}
	}
	plumbing.InitHooks.M[name] = run
}

// AfterInit reports whether process.Init has run in this process. A package
// whose Register makes functions that children find by name (pool's tasks)
// panics when it is true: a child runs Init before main's code, so a
// function registered after Init, in main, is unknown to it.
func AfterInit() bool { return plumbing.Initialized.Load() }

// InheritFunc returns a handle to give to a new child: files (duplicates
// that the process package closes once the child has started) and a
// descriptor. Returning no files and a nil descriptor gives nothing to this
// child.
type InheritFunc func() (files []*os.File, desc []byte, err error)

// RegisterInherited makes fn run at every Start, in this process and (as
// the same package-level code runs there) in its children, and hands its
// result to the new child under key, which the child's code retrieves
// with Inherited(key). It is the hook a higher module uses to give every
// process of the tree a handle, e.g. the resource tracker's connection.
// Call it at package initialisation; it panics on an empty or duplicate
// key, or one starting with "process." (the process package's own). An
// error from fn makes Start fail.
func RegisterInherited(key string, fn InheritFunc) {
	if key == "" || fn == nil {
		panic("starter: RegisterInherited needs a key and a function")
	}
	if strings.HasPrefix(key, "process.") {
		panic(fmt.Sprintf("starter: RegisterInherited(%q): keys starting with \"process.\" are the process package's own", key))
	}
	plumbing.Inherited.Lock()
	defer plumbing.Inherited.Unlock()
	for _, p := range plumbing.Inherited.Providers {
		if p.Key == key {
			panic(fmt.Sprintf("starter: RegisterInherited(%q): key already registered", key))
		}
	}
	plumbing.Inherited.Providers = append(plumbing.Inherited.Providers, plumbing.Provider{Key: key, Fn: fn})
}

// Inherited returns, in a child, the files and descriptor that the
// parent's RegisterInherited function produced under key. The first call
// takes ownership of the files (the caller closes them); later calls, and
// calls in the main process, return ok false. Files never claimed stay
// open, close-on-exec, until the child exits.
func Inherited(key string) (files []*os.File, desc []byte, ok bool) {
	plumbing.Inherited.Lock()
	defer plumbing.Inherited.Unlock()
	ref, ok := plumbing.Inherited.Received[key]
	if !ok {
		return nil, nil, false
	}
	delete(plumbing.Inherited.Received, key)
	files, err := plumbing.TakeFiles(plumbing.Inherited.Table, ref.Files)
	if err != nil {
		return nil, nil, false
	}
	return files, ref.Desc, true
}
