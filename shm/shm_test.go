// SPDX-License-Identifier: Apache-2.0

package shm

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/tracker"
)

func TestMain(m *testing.M) {
	process.Init()
	if os.Getenv(mptest.EnvHelper) == "" {
		// Start the tree's resource tracker now, so that the leak checks
		// of the first test that creates a named segment do not count
		// its pipe and process.
		if err := tracker.EnsureRunning(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	mptest.Main(m)
}
