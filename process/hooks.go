// SPDX-License-Identifier: Apache-2.0

package process

import (
	"fmt"
	"os"

	"github.com/multiproc/multiproc/process/internal/plumbing"
)

// runInitHooks runs the hook whose variable is set, if any.
func runInitHooks() {
	plumbing.InitHooks.Lock()
	if len(plumbing.InitHooks.M) == 0 {
		plumbing.InitHooks.Unlock()
		return
	}
	var run func(string)
	var v string
	for name, fn := range plumbing.InitHooks.M {
		if val, ok := os.LookupEnv(name); ok {
			os.Unsetenv(name)
			run, v = fn, val
			break
		}
	}
	plumbing.InitHooks.Unlock()
	if run != nil {
		run(v)
		childFatal(fmt.Errorf("process: an init hook returned"))
	}
}
