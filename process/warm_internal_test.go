// SPDX-License-Identifier: Apache-2.0

package process

import (
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
)

// The warm-up a Starter's warm process runs (warmChildPath) leaves no
// descriptor behind (its throwaway status socket, pipe and Conn are all
// closed), run once or again.
func TestWarmChildPath(t *testing.T) {
	mptest.CheckFDs(t)
	warmChildPath()
	warmChildPath()
}
