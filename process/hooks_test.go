// SPDX-License-Identifier: Apache-2.0

package process_test

import (
	"sync"
	"testing"

	"github.com/multiproc/multiproc/process/starter"
)

func TestChildFromPidfdBadArgs(t *testing.T) {
	for _, c := range [][2]int{{0, 3}, {-1, 3}, {1, -1}} {
		if _, err := starter.ChildFromPidfd(c[0], c[1]); err == nil {
			t.Errorf("ChildFromPidfd(%d, %d) accepted", c[0], c[1])
		}
	}
}

var registerTestHook = sync.OnceFunc(func() { starter.RegisterInitHook("PROCESS_TEST_HOOK", func(string) {}) })

func TestRegisterInitHookRefusesBadNames(t *testing.T) {
	registerTestHook() // once: -count=N runs the test again
	for _, name := range []string{"", "MULTIPROC_CHILD", "PROCESS_TEST_HOOK"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterInitHook(%q) did not panic", name)
				}
			}()
			starter.RegisterInitHook(name, func(string) {})
		}()
	}
}
