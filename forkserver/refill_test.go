// SPDX-License-Identifier: Apache-2.0

package forkserver

import (
	"context"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
)

var fnRefillEmpty = process.Register("forkserver.refill.empty", func(context.Context) error { return nil })

func TestRefillDelayOption(t *testing.T) {
	if _, err := New(RefillDelay(-time.Millisecond)); err == nil {
		t.Fatal("RefillDelay(-1ms) accepted")
	}
	for _, d := range []time.Duration{0, time.Millisecond} {
		s, err := New(RefillDelay(d))
		if err != nil {
			t.Fatalf("RefillDelay(%v): %v", d, err)
		}
		s.Close()
	}
}

// A start never waits for the refill delay: with a delay longer than the
// test, back-to-back starts through a set of one still succeed, each
// take that finds the set empty asking for a warm process at once. Close
// with the delayed top-up still pending leaves nothing behind (mptest's
// goleak check, the children check).
func TestRefillDelayNeverDelaysAStart(t *testing.T) {
	mptest.CheckChildren(t)
	s, err := New(Size(1), RefillDelay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 3 {
		p := fnRefillEmpty.Process()
		p.Starter = s
		if err := p.Start(ctx); err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		if err := p.Join(ctx); err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
		p.Close()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// With RefillDelay(0) the replacement is asked for at once, as before the
// option existed; Warm then finds the set full again.
func TestRefillDelayZero(t *testing.T) {
	s, err := New(Size(1), RefillDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := fnRefillEmpty.Process()
	p.Starter = s
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if err := s.Warm(ctx); err != nil {
		t.Fatal(err)
	}
}
