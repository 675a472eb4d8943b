// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
)

// TestWait.test_wait / test_wait_socket: several children send messages
// and close; Wait multiplexes their Conns until every one reached EOF.
func TestWaitManyChildren(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			mptest.CheckFDs(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			const kids, msgs = 4, 10
			var readers []Waitable
			var cmds []*exec.Cmd
			for k := range kids {
				r, w := mustPipe(t, false, tr.opts...)
				var args []string
				for i := range msgs {
					args = append(args, fmt.Sprintf("%d-%d", k, i))
				}
				cmds = append(cmds, startChild(t, "send", args, w))
				readers = append(readers, r)
			}
			var got []string
			open := slices.Clone(readers)
			for len(open) > 0 {
				ready, err := Wait(ctx, open...)
				if err != nil {
					t.Fatal(err)
				}
				if len(ready) == 0 {
					t.Fatal("Wait returned nothing and no error")
				}
				for _, w := range ready {
					c := w.(*Conn)
					m, err := c.RecvBytes(ctx)
					if err != nil {
						// EOF: this child is done.
						c.Close()
						open = slices.DeleteFunc(open, func(x Waitable) bool { return x == w })
						continue
					}
					got = append(got, string(m))
				}
			}
			for _, c := range cmds {
				waitChild(t, c)
			}
			var want []string
			for k := range kids {
				for i := range msgs {
					want = append(want, fmt.Sprintf("%d-%d", k, i))
				}
			}
			sort.Strings(got)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Fatalf("got %v\nwant %v", got, want)
			}
		})
	}
}

// fdWaitable is a raw descriptor, like the integer sentinels CPython's
// wait accepts (the process package's sentinels implement WaitFD too).
type fdWaitable struct{ f *os.File }

func (w fdWaitable) WaitFD() (uintptr, bool, error) { return w.f.Fd(), false, nil }

// test_wait_integer: a sentinel that becomes readable when a child exits
// (the read end of a pipe whose write end only the child holds), mixed
// with a Conn.
func TestWaitSentinel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sr, sw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer sr.Close()
	r, w := mustPipe(t, false)
	cmd := mptest.HelperCmd(t, "send")
	// The child gets the Conn as fd 3 and the sentinel's write end as fd 4.
	fs, desc, err := w.MultiprocHandle()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Args = append(cmd.Args, "1", fmt.Sprintf("1:%x", desc), "hello")
	cmd.ExtraFiles = append(fs, sw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sw.Close()
	fs[0].Close()
	w.Close()
	sentinel := fdWaitable{sr}
	seen := map[string]bool{}
	for !seen["sentinel"] {
		ready, err := Wait(ctx, r, sentinel)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range ready {
			switch x {
			case sentinel:
				seen["sentinel"] = true
			case Waitable(r):
				if m, err := r.RecvBytes(ctx); err == nil {
					seen[string(m)] = true
				}
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	// The Conn's data may still be unread when the sentinel fires.
	if !seen["hello"] {
		if m, err := r.RecvBytes(ctx); err != nil || string(m) != "hello" {
			t.Fatalf("%q %v", m, err)
		}
	}
}

// test_wait_timeout / test_neg_timeout: a timeout returns nothing (and
// ctx's error) after the timeout; an expired ctx returns at once but still
// reports what is ready; Wait consumes nothing.
func TestWaitTimeout(t *testing.T) {
	a, b := mustPipe(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ready, err := Wait(ctx, b)
	if len(ready) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v %v", ready, err)
	}
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if ready, err := Wait(done, b); len(ready) != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("expired ctx, nothing ready: %v %v", ready, err)
	}
	a.SendBytes(context.Background(), []byte("x"))
	for range 2 {
		if ready, err := Wait(done, a, b); err != nil || len(ready) != 1 || ready[0] != Waitable(b) {
			t.Fatalf("expired ctx, b ready: %v %v", ready, err)
		}
	}
	// Buffered data counts: after a Poll-free partial read the Conn
	// reports ready without polling its descriptor.
	a.SendFrames(context.Background(), []byte("1"), []byte("2"))
	b.RecvBytes(context.Background())
	b.RecvBytes(context.Background())
	if ready, _ := Wait(done, b); len(ready) != 1 {
		t.Fatalf("buffered frame not ready: %v", ready)
	}
	b.RecvBytes(context.Background())
	if ready, _ := Wait(done, b); len(ready) != 0 {
		t.Fatalf("drained Conn ready: %v", ready)
	}
	// Cancellation wakes a blocked Wait.
	cctx, cancel3 := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { _, err := Wait(cctx, b); errc <- err }()
	mptest.WaitBlocked(t, "ipc.Wait(")
	cancel3()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait: %v", err)
	}
}

// A closed Conn is an error; a bad descriptor is reported ready (the
// next operation fails), not a crash (TestInvalidHandle).
func TestWaitInvalid(t *testing.T) {
	a, _ := mustPipe(t, true)
	a.Close()
	if _, err := Wait(context.Background(), a); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait on a closed Conn: %v", err)
	}
	bad := rawFD(1<<20 - 1) // never open: poll(2) reports POLLNVAL
	// poll(2) answers at once; the context only bounds a hang, so it is
	// generous (a short one could end first on a loaded machine).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if ready, err := Wait(ctx, bad); err != nil || len(ready) != 1 {
		t.Errorf("Wait on a closed descriptor: %v %v", ready, err)
	}
}

type rawFD int

func (r rawFD) WaitFD() (uintptr, bool, error) { return uintptr(r), false, nil }
