// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/shm"
)

// Shared block layout of the barrier tests (uint32 words): 0 the log
// length, 1 the action count, 16.. the log.
const logBase = 16

var _ = mptest.RegisterHelper("barrier-passes", func() {
	// passes times: Wait, then append (pass, index) to the shared log
	// under the lock.
	b, l, blk := new(Barrier), new(Lock), new(shm.Block)
	attach(0, b)
	attach(1, l)
	attach(2, blk)
	b.SetAction(func() error { atomic.AddUint32(word32(blk, 1), 1); return nil })
	passes := argInt(0)
	for i := 0; i < passes; i++ {
		idx, err := b.Wait(bg)
		must(err, fmt.Sprintf("wait %d", i))
		l.Lock()
		n := *word32(blk, 0)
		*word32(blk, logBase+2*int(n)) = uint32(i)
		*word32(blk, logBase+2*int(n)+1) = uint32(idx)
		*word32(blk, 0) = n + 1
		l.Unlock()
	}
})

var _ = mptest.RegisterHelper("barrier-wait", func() {
	// One Wait with an optional timeout in ms (arg 0, 0 for none); says
	// "broken" or the index.
	b := new(Barrier)
	attach(0, b)
	ctx := bg
	if ms := argInt(0); ms > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(bg, time.Duration(ms)*time.Millisecond)
		defer cancel()
	}
	idx, err := b.Wait(ctx)
	switch {
	case errors.Is(err, ErrBrokenBarrier):
		say("broken")
	case err != nil:
		die("wait: %v", err)
	default:
		say(strconv.Itoa(idx))
	}
})

// passes is the number of passes of TestBarrierThousand.
const passes = 1000

// TestBarrierThousand ports test_thousand: 5 processes, 1000 passes, the
// log ordered by pass, each pass's indices a permutation of 0..4, the
// action run once per pass.
func TestBarrierThousand(t *testing.T) {
	const n = 5
	b, err := NewBarrier(n)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	l, err := NewLock()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	blk := newBlock(t, 4*(logBase+2*n*passes))
	var cs []*proc
	for i := 0; i < n; i++ {
		cs = append(cs, start(t, "barrier-passes", []string{strconv.Itoa(passes)}, b, l, blk))
	}
	for _, c := range cs {
		c.wait()
	}
	if got := *word32(blk, 0); got != n*passes {
		t.Fatalf("log length %d, want %d", got, n*passes)
	}
	if got := *word32(blk, 1); got != passes {
		t.Fatalf("action ran %d times, want %d", got, passes)
	}
	for p := 0; p < passes; p++ {
		var idx []int
		for j := 0; j < n; j++ {
			k := p*n + j
			if got := *word32(blk, logBase+2*k); got != uint32(p) {
				t.Fatalf("log[%d] = pass %d, want %d", k, got, p)
			}
			idx = append(idx, int(*word32(blk, logBase+2*k+1)))
		}
		slices.Sort(idx)
		if !slices.Equal(idx, []int{0, 1, 2, 3, 4}) {
			t.Fatalf("pass %d: indices %v", p, idx)
		}
	}
}

// TestBarrierGoroutines: lockstep passes among goroutines, with exactly
// one index 0 and one action per pass (test_barrier, test_wait_return,
// test_action).
func TestBarrierGoroutines(t *testing.T) {
	const n, rounds = 5, 10
	var actions atomic.Int32
	b, err := NewBarrier(n, Action(func() error { actions.Add(1); return nil }))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var mu sync.Mutex
	zeros := 0
	var wg sync.WaitGroup
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				idx, err := b.Wait(bg)
				if err != nil {
					t.Error(err)
					return
				}
				if idx == 0 {
					mu.Lock()
					zeros++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if zeros != rounds || actions.Load() != rounds {
		t.Fatalf("index 0 returned %d times, action ran %d times; want %d", zeros, actions.Load(), rounds)
	}
	if b.Parties() != n || b.Waiting() != 0 || b.Broken() {
		t.Fatalf("Parties %d Waiting %d Broken %v", b.Parties(), b.Waiting(), b.Broken())
	}
	one, err := NewBarrier(1)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	for i := 0; i < 3; i++ {
		if idx, err := one.Wait(bg); idx != 0 || err != nil {
			t.Fatalf("Barrier(1).Wait: %d %v", idx, err)
		}
	}
}

// waitAll starts k children waiting on b, and returns once they all wait.
func waitAll(t *testing.T, b *Barrier, k int, timeoutMS int) []*proc {
	t.Helper()
	var cs []*proc
	for i := 0; i < k; i++ {
		cs = append(cs, start(t, "barrier-wait", []string{strconv.Itoa(timeoutMS)}, b))
	}
	return cs
}

func expectAll(cs []*proc, want string) {
	for _, c := range cs {
		c.expect(want)
		c.wait()
	}
}

// TestBarrierAbortReset ports test_abort, test_reset and
// test_abort_and_reset across processes.
func TestBarrierAbortReset(t *testing.T) {
	const n = 3
	b, err := NewBarrier(n)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Abort while two children wait: both get broken, as do later waits.
	cs := waitAll(t, b, n-1, 0)
	if err := b.awaitWaiting(bg, n-1); err != nil {
		t.Fatal(err)
	}
	if err := b.Abort(); err != nil {
		t.Fatal(err)
	}
	expectAll(cs, "broken")
	if _, err := b.Wait(bg); !errors.Is(err, ErrBrokenBarrier) {
		t.Fatalf("Wait on a broken barrier: %v", err)
	}
	if !b.Broken() {
		t.Fatal("not Broken after Abort")
	}
	// Reset repairs it.
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	if b.Broken() {
		t.Fatal("Broken after Reset")
	}
	cs = waitAll(t, b, n-1, 0)
	idx, err := b.Wait(bg)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, c := range cs {
		line, _ := c.out.ReadString('\n')
		v, _ := strconv.Atoi(line[:len(line)-1])
		got = append(got, v)
		c.wait()
	}
	got = append(got, idx)
	slices.Sort(got)
	if !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("indices after Reset: %v", got)
	}
	// Reset while parties wait breaks them, and the barrier is reusable.
	cs = waitAll(t, b, n-1, 0)
	if err := b.awaitWaiting(bg, n-1); err != nil {
		t.Fatal(err)
	}
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	expectAll(cs, "broken")
	if b.Broken() {
		t.Fatal("Broken after the reset completed")
	}
}

// TestBarrierTimeout ports test_timeout and test_default_timeout: one
// party's timeout breaks the barrier for every party.
func TestBarrierTimeout(t *testing.T) {
	for _, dflt := range []bool{false, true} {
		t.Run(fmt.Sprintf("default=%v", dflt), func(t *testing.T) {
			var opts []Option
			ms := 50
			if dflt {
				opts = append(opts, Timeout(50*time.Millisecond))
				ms = 0
			}
			b, err := NewBarrier(3, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			cs := waitAll(t, b, 2, ms) // the third party never comes
			expectAll(cs, "broken")
			if !b.Broken() {
				t.Fatal("barrier not broken by the timeout")
			}
			ctx, cancel := context.WithCancel(bg)
			cancel()
			if _, err := b.Wait(ctx); !errors.Is(err, ErrBrokenBarrier) {
				t.Fatalf("Wait on the broken barrier: %v", err)
			}
		})
	}
}

// TestBarrierActionError: a failing action breaks the barrier.
func TestBarrierActionError(t *testing.T) {
	boom := errors.New("boom")
	b, err := NewBarrier(2, Action(func() error { return boom }))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	errc := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { _, err := b.Wait(bg); errc <- err }()
	}
	e1, e2 := <-errc, <-errc
	if !(errors.Is(e1, boom) && errors.Is(e2, ErrBrokenBarrier) || errors.Is(e2, boom) && errors.Is(e1, ErrBrokenBarrier)) {
		t.Fatalf("errors %v, %v", e1, e2)
	}
}
