// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
)

var _ = mptest.RegisterHelper("event-set", func() {
	e := new(Event)
	attach(0, e)
	hear()
	must(e.Set(), "set")
})

var _ = mptest.RegisterHelper("event-pong", func() {
	e1, e2 := new(Event), new(Event)
	attach(0, e1)
	attach(1, e2)
	n := argInt(0)
	for i := 0; i < n; i++ {
		must(e1.Wait(bg), "wait")
		must(e1.Clear(), "clear")
		must(e2.Set(), "set")
	}
})

// TestEvent ports _TestEvent.test_event across processes.
func TestEvent(t *testing.T) {
	e, err := NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.IsSet() {
		t.Fatal("new Event is set")
	}
	// wait(0) and wait(timeout) return False.
	ctx0, cancel := context.WithTimeout(bg, 0)
	defer cancel()
	if err := e.Wait(ctx0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait(0): %v", err)
	}
	ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
	defer cancel()
	if err := e.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait(timeout): %v", err)
	}
	// set, then wait returns at once, even with a done context.
	if err := e.Set(); err != nil {
		t.Fatal(err)
	}
	if !e.IsSet() {
		t.Fatal("IsSet after Set")
	}
	if err := e.Wait(ctx0); err != nil {
		t.Fatalf("Wait on a set event: %v", err)
	}
	if err := e.Clear(); err != nil {
		t.Fatal(err)
	}
	if e.IsSet() {
		t.Fatal("IsSet after Clear")
	}
	// Another process sets it and wakes waiters here.
	c := start(t, "event-set", nil, e)
	errc := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { errc <- e.Wait(bg) }()
	}
	c.tell("set")
	for i := 0; i < 3; i++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	c.wait()
	// A cancelled wait leaves the event as it was.
	e.Clear()
	cctx, ccancel := context.WithCancel(bg)
	go func() { errc <- e.Wait(cctx) }()
	ccancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait: %v", err)
	}
	if e.IsSet() {
		t.Fatal("cancelled Wait changed the event")
	}
}

// TestEventPingPong: set/wait/clear ping-pong with a child.
func TestEventPingPong(t *testing.T) {
	e1, err := NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer e1.Close()
	e2, err := NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	const n = 2000
	c := start(t, "event-pong", []string{strconv.Itoa(n)}, e1, e2)
	for i := 0; i < n; i++ {
		e1.Set()
		if err := e2.Wait(bg); err != nil {
			t.Fatal(err)
		}
		e2.Clear()
	}
	c.wait()
}
