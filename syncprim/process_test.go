// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"errors"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
)

// holdLock runs in a child started by the process package: it takes the
// lock, says so through the event, and holds it until killed.
var holdLock = process.Register("syncprim.test.hold", func(ctx context.Context, l *Lock, held *Event) error {
	if err := l.Acquire(ctx); err != nil {
		return err
	}
	if err := held.Set(); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
})

// TestProcessOwnerDead: primitives travel to a child through the process
// package's handle contract; the child is SIGKILLed holding the lock and
// the parent then acquires it with ErrOwnerDead.
func TestProcessOwnerDead(t *testing.T) {
	mptest.CheckChildren(t)
	l, err := NewLock()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held, err := NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	p := holdLock.Process(l, held)
	if err := p.Start(bg); err != nil {
		t.Fatal(err)
	}
	if err := held.Wait(bg); err != nil {
		t.Fatal(err)
	}
	if got := l.Owner(); got != p.Pid() {
		t.Fatalf("Owner() = %d, want the child %d", got, p.Pid())
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err == nil {
		t.Fatal("killed child exited cleanly")
	}
	if err := l.Acquire(bg); !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("Acquire after the holder was killed: %v, want ErrOwnerDead", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}
