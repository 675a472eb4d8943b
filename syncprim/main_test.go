// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
)

func TestMain(m *testing.M) {
	process.Init() // children started by the examples (process package)
	mptest.Main(m)
}
