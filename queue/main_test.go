package queue

import (
	"context"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
)

func TestMain(m *testing.M) {
	process.Init()
	mptest.Main(m)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func leakChecks(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckChildren(t)
	mptest.CheckShm(t)
}

func must[V any](t testing.TB) func(V, error) V {
	return func(v V, err error) V {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
