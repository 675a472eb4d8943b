// SPDX-License-Identifier: Apache-2.0

package startbench

import (
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
)

func TestMain(m *testing.M) {
	process.Init()
	mptest.Main(m)
}
