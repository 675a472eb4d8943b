// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"context"
	"strings"
	"testing"

	"github.com/multiproc/multiproc/pool"
)

// TestMain called process.Init(): a task registered now, as from main, is
// unknown to the workers, and Register says so at once instead of Map
// failing later with "task is not registered in the worker".
func TestRegisterAfterInitPanics(t *testing.T) {
	defer func() {
		s, _ := recover().(string)
		if !strings.Contains(s, "called after process.Init(): register tasks at package level") {
			t.Fatalf("panic %q, want the advice to register at package level", s)
		}
	}()
	pool.Register("test.after.init", func(ctx context.Context, x int) (int, error) { return x, nil })
}
