// SPDX-License-Identifier: Apache-2.0

package pickle_test

import (
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
)

func TestMain(m *testing.M) { mptest.Main(m) }
