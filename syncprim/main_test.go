package syncprim

import (
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
)

func TestMain(m *testing.M) { mptest.Main(m) }
