// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/process/starter"
)

// countingStarter is process.Spawn, counting its starts.
type countingStarter struct{ n atomic.Int32 }

func (c *countingStarter) Name() string { return "counting" }

func (c *countingStarter) Start(ctx context.Context, req *starter.Request) (starter.Child, error) {
	c.n.Add(1)
	return process.Spawn.Start(ctx, req)
}

// A pool made after process.SetDefaultStarter starts its workers with that
// Starter, and keeps it when the default changes later.
func TestDefaultStarter(t *testing.T) {
	ctx := context.Background()
	c := &countingStarter{}
	process.SetDefaultStarter(c)
	p, err := pool.New(ctx, pool.Workers(2))
	process.SetDefaultStarter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.Terminate()
		p.Join(ctx)
	}()
	got, err := square.Map(ctx, p, []int{1, 2, 3})
	if err != nil || len(got) != 3 || got[2] != 9 {
		t.Fatalf("Map = %v, %v", got, err)
	}
	if n := c.n.Load(); n != 2 {
		t.Fatalf("the default Starter started %d workers, want 2", n)
	}
	p.Close()
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
}
