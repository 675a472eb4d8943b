package process_test

import (
	"testing"

	"github.com/multiproc/multiproc/process"
)

func TestChildFromPidfdBadArgs(t *testing.T) {
	for _, c := range [][2]int{{0, 3}, {-1, 3}, {1, -1}} {
		if _, err := process.ChildFromPidfd(c[0], c[1]); err == nil {
			t.Errorf("ChildFromPidfd(%d, %d) accepted", c[0], c[1])
		}
	}
}

func TestRegisterInitHookRefusesBadNames(t *testing.T) {
	process.RegisterInitHook("PROCESS_TEST_HOOK", func(string) {})
	for _, name := range []string{"", "MULTIPROC_CHILD", "PROCESS_TEST_HOOK"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterInitHook(%q) did not panic", name)
				}
			}()
			process.RegisterInitHook(name, func(string) {})
		}()
	}
}
