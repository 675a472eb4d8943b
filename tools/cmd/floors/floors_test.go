// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain lets the test binary be the floors' children too: they are
// re-executions of /proc/self/exe.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		os.Exit(child(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// Every floor runs a few iterations and gives a positive figure, and none
// leaves a /dev/shm segment behind.
func TestEveryFloorRuns(t *testing.T) {
	for _, f := range floors() {
		t.Run(f.key, func(t *testing.T) {
			n := max(2, f.iters/1000)
			v, err := f.run(n)
			if err != nil || !(v > 0) {
				t.Fatalf("%s: %v, %v; want a positive %s", f.key, v, err, f.unit)
			}
		})
	}
	if left, _ := filepath.Glob(shmName()); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
