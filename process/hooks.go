// SPDX-License-Identifier: Apache-2.0

package process

import (
	"fmt"
	"os"
	"sync"
)

var initHooks struct {
	sync.Mutex
	m map[string]func(string)
}

// RegisterInitHook makes Init call run, in place of its own child
// start-up, when the environment variable name is set: Init unsets the
// variable and calls run with its value. run must not return: it ends by
// calling RunChild (or os.Exit). This is how a Starter in another module
// (the forkserver's) makes the processes it pre-starts wait, after the
// runtime and every package are initialised and before main runs any user
// code, for the request that turns them into a child. Call it from a
// package init function, so that it is registered before main calls Init.
// It panics when name is empty or already registered.
func RegisterInitHook(name string, run func(value string)) {
	if name == "" || name == envChild || run == nil {
		panic(fmt.Sprintf("process: RegisterInitHook(%q): bad name or nil function", name))
	}
	initHooks.Lock()
	defer initHooks.Unlock()
	if _, dup := initHooks.m[name]; dup {
		panic(fmt.Sprintf("process: RegisterInitHook(%q): already registered", name))
	}
	if initHooks.m == nil {
		initHooks.m = map[string]func(string){}
	}
	initHooks.m[name] = run
}

// runInitHooks runs the hook whose variable is set, if any.
func runInitHooks() {
	initHooks.Lock()
	if len(initHooks.m) == 0 {
		initHooks.Unlock()
		return
	}
	var run func(string)
	var v string
	for name, fn := range initHooks.m {
		if val, ok := os.LookupEnv(name); ok {
			os.Unsetenv(name)
			run, v = fn, val
			break
		}
	}
	initHooks.Unlock()
	if run != nil {
		run(v)
		childFatal(fmt.Errorf("process: an init hook returned"))
	}
}

// ChildFromPidfd returns a Child for a process this process started itself
// (by fork/exec, with its pid and a pidfd from clone's CLONE_PIDFD or
// pidfd_open), watched exactly as Spawn watches its children: Wait reaps
// it through the pidfd, Signal uses pidfd_send_signal, WaitFD is the
// pidfd. It takes ownership of pidfd (Release closes it); on error pidfd
// is closed. It lets a Starter in another module (the forkserver's) hand
// out children it started ahead of time.
func ChildFromPidfd(pid, pidfd int) (Child, error) {
	if pid <= 0 || pidfd < 0 {
		return nil, fmt.Errorf("process: ChildFromPidfd(%d, %d): bad pid or pidfd", pid, pidfd)
	}
	return newPidfdChild(pid, pidfd)
}
