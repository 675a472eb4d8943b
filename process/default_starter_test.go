// SPDX-License-Identifier: Apache-2.0

package process

import (
	"context"
	"errors"
	"testing"

	"github.com/multiproc/multiproc/process/starter"
)

// countingStarter is Spawn, counting its starts.
type countingStarter struct{ n int }

func (c *countingStarter) Name() string { return "counting" }

func (c *countingStarter) Start(ctx context.Context, req *starter.Request) (starter.Child, error) {
	c.n++
	return Spawn.Start(ctx, req)
}

var errRefused = errors.New("refused")

type refusingStarter struct{}

func (refusingStarter) Name() string { return "refusing" }

func (refusingStarter) Start(context.Context, *starter.Request) (starter.Child, error) {
	return nil, errRefused
}

func TestSetDefaultStarter(t *testing.T) {
	if got := DefaultStarter(); got != Spawn {
		t.Fatalf("DefaultStarter() = %v before any SetDefaultStarter, want Spawn", got)
	}
	defer SetDefaultStarter(nil)
	ctx := context.Background()
	c := &countingStarter{}
	SetDefaultStarter(c)
	if got := DefaultStarter(); got != c {
		t.Fatalf("DefaultStarter() = %v, want the one set", got)
	}
	p := &Process{Func: fnDefaultStarterEmpty}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if c.n != 1 || p.StartMethodName() != "counting" {
		t.Fatalf("default starter used %d times, method %q", c.n, p.StartMethodName())
	}
	// A Process's own Starter wins over the default.
	SetDefaultStarter(refusingStarter{})
	p = &Process{Func: fnDefaultStarterEmpty, Starter: c}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p.Join(ctx)
	p.Close()
	p = &Process{Func: fnDefaultStarterEmpty}
	if err := p.Start(ctx); !errors.Is(err, errRefused) {
		t.Fatalf("Start with the refusing default = %v", err)
	}
	SetDefaultStarter(nil)
	if got := DefaultStarter(); got != Spawn {
		t.Fatalf("DefaultStarter() after SetDefaultStarter(nil) = %v, want Spawn", got)
	}
}

var fnDefaultStarterEmpty = Register("process.test.defaultstarter.empty", func(context.Context) error { return nil })
