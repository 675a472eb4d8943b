// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
)

var _ = mptest.RegisterHelper("lock-wait", func() {
	// Waits for the handed lock (arg 0: "lock" or "rlock") and says
	// "dead" when it gets it with ErrOwnerDead.
	var l Mutex
	if mptest.HelperArgs()[0] == "rlock" {
		l = new(RLock)
	} else {
		l = new(Lock)
	}
	attach(0, l.(attacher))
	say("waiting")
	err := l.Acquire(bg)
	if !errors.Is(err, ErrOwnerDead) {
		die("Acquire: %v, want ErrOwnerDead", err)
	}
	say("dead")
	must(l.Release(), "release")
})

// ownerWord returns the owner word of a Lock or RLock.
func ownerWord(l Mutex) *uint64 {
	switch l := l.(type) {
	case *Lock:
		return &l.m.owner
	case *RLock:
		return &l.m.Load().owner
	}
	panic("not a lock")
}

// readLine reads p's next line, failing after ceiling (which only proves
// the wait is not indefinite).
func (p *proc) readLine(ceiling time.Duration) string {
	p.t.Helper()
	type res struct {
		s   string
		err error
	}
	c := make(chan res, 1)
	go func() {
		s, err := p.out.ReadString('\n')
		c <- res{strings.TrimSuffix(s, "\n"), err}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			p.t.Fatalf("child %d: %v", p.cmd.Process.Pid, r.err)
		}
		return r.s
	case <-time.After(ceiling):
		p.t.Fatalf("child %d said nothing in %v", p.cmd.Process.Pid, ceiling)
	}
	return ""
}

// cpuTicks returns the user plus system CPU time of pid, in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])
	u, _ := strconv.Atoi(string(f[11]))
	s, _ := strconv.Atoi(string(f[12]))
	return u + s
}

// TestOwnerDeadSleeper: a process asleep in Acquire when the holder is
// SIGKILLed gets the lock with ErrOwnerDead, promptly: the kill lands at a
// random moment 0–150 ms after the waiter went to sleep, so both the
// first liveness check (after 20 ms) and the exit watch (a pidfd, armed
// after it) are exercised. The pass condition is ErrOwnerDead arriving;
// the latencies are logged (go test -v), with only a generous ceiling.
// One trial also checks that a sleeping waiter does not burn CPU.
func TestOwnerDeadSleeper(t *testing.T) {
	for _, kind := range []string{"lock", "rlock"} {
		t.Run(kind, func(t *testing.T) {
			var l interface {
				Mutex
				handler
			}
			if kind == "rlock" {
				r, err := NewRLock()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				l = r
			} else {
				r, err := NewLock()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				l = r
			}
			trials := 20
			if kind == "rlock" || testing.Short() {
				trials = 8
			}
			var early, late []time.Duration
			for i := 0; i < trials; i++ {
				h := start(t, "lock-hold", []string{kind}, l)
				h.expect("held")
				w := start(t, "lock-wait", []string{kind}, l)
				w.expect("waiting")
				// The waiters flag is set right before FUTEX_WAIT.
				for deadline := time.Now().Add(30 * time.Second); atomic.LoadUint64(ownerWord(l))&waitersFlag == 0; {
					if time.Now().After(deadline) {
						t.Fatal("the waiter never went to sleep")
					}
					time.Sleep(time.Millisecond)
				}
				delay := time.Duration(rand.Int64N(int64(150 * time.Millisecond)))
				if i == 0 {
					// A long sleep: measure the waiter's CPU time
					// over 500 ms of it.
					time.Sleep(100 * time.Millisecond)
					c0 := cpuTicks(t, w.cmd.Process.Pid)
					time.Sleep(500 * time.Millisecond)
					if c := cpuTicks(t, w.cmd.Process.Pid) - c0; c > 10 {
						t.Fatalf("a sleeping waiter used %d clock ticks of CPU in 500 ms", c)
					}
				} else {
					time.Sleep(delay)
				}
				t0 := time.Now()
				h.kill()
				if s := w.readLine(30 * time.Second); s != "dead" {
					t.Fatalf("waiter said %q, want dead", s)
				}
				lat := time.Since(t0)
				h.reap()
				w.wait()
				if i > 0 && delay < livenessFirst {
					early = append(early, lat)
				} else {
					late = append(late, lat)
				}
			}
			t.Logf("ErrOwnerDead latency after SIGKILL, holder killed < %v into the wait: %s", livenessFirst, dist(early))
			t.Logf("ErrOwnerDead latency after SIGKILL, holder killed later (exit watch armed): %s", dist(late))
		})
	}
}

// dist summarises durations: n, min, median, p90, max.
func dist(d []time.Duration) string {
	if len(d) == 0 {
		return "n=0"
	}
	d = slices.Clone(d)
	slices.Sort(d)
	ms := func(x time.Duration) string { return fmt.Sprintf("%.1fms", float64(x)/1e6) }
	return fmt.Sprintf("n=%d min=%s median=%s p90=%s max=%s", len(d), ms(d[0]), ms(d[len(d)/2]),
		ms(d[len(d)*9/10]), ms(d[len(d)-1]))
}

var _ = mptest.RegisterHelper("lock-wait-any", func() {
	// Waits for the handed Lock and says "ok" or "dead" (ErrOwnerDead),
	// then releases it when its stdin ends.
	l := new(Lock)
	attach(0, l)
	say("waiting")
	err := l.Acquire(bg)
	switch {
	case err == nil:
		say("ok")
	case errors.Is(err, ErrOwnerDead):
		say("dead")
	default:
		die("Acquire: %v", err)
	}
	hear()
	must(l.Release(), "release")
})

var _ = mptest.RegisterHelper("lock-hold-stay", func() {
	// lock-hold that stays alive after releasing, until its stdin ends.
	l := new(Lock)
	attach(0, l)
	must(l.Acquire(bg), "acquire")
	say("held")
	hear()
	must(l.Release(), "release")
	say("released")
	hear()
})

// TestOwnerDeadAfterHandOver: a waiter asleep, and watching the holder,
// while the lock passes to another process without waking it (the release
// woke the other sleeper, which took the lock; the old holder lives on):
// when that new holder is SIGKILLed, the waiter still gets ErrOwnerDead,
// within its 50 ms re-check of who holds the lock. Which sleeper a release
// wakes is up to the kernel, so attempts where the watching waiter itself
// got the lock are repeated. Latencies are logged; the pass condition is
// ErrOwnerDead arriving.
func TestOwnerDeadAfterHandOver(t *testing.T) {
	l, err := NewLock()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var lats []time.Duration
	for attempt := 0; len(lats) < 4; attempt++ {
		if attempt == 40 {
			t.Fatalf("in %d attempts the lock went to the other sleeper only %d times", attempt, len(lats))
		}
		h1 := start(t, "lock-hold-stay", nil, l)
		h1.expect("held")
		s := start(t, "lock-hold", []string{"lock"}, l)
		for deadline := time.Now().Add(30 * time.Second); atomic.LoadUint64(&l.m.owner)&waitersFlag == 0; {
			if time.Now().After(deadline) {
				t.Fatal("the first waiter never went to sleep")
			}
			time.Sleep(time.Millisecond)
		}
		w := start(t, "lock-wait-any", nil, l)
		w.expect("waiting")
		time.Sleep(80 * time.Millisecond) // both checked h1 and watch it
		h1.tell("release")
		h1.expect("released")
		var owner int
		for deadline := time.Now().Add(30 * time.Second); owner == 0 || owner == h1.cmd.Process.Pid; owner = l.Owner() {
			if time.Now().After(deadline) {
				t.Fatal("nobody took the released lock")
			}
			time.Sleep(100 * time.Microsecond)
		}
		if owner == s.cmd.Process.Pid {
			s.expect("held")
			t0 := time.Now()
			s.kill()
			if got := w.readLine(30 * time.Second); got != "dead" {
				t.Fatalf("the watching waiter said %q, want dead", got)
			}
			lats = append(lats, time.Since(t0))
			s.reap()
			w.wait()
		} else {
			// The watching waiter got it: not the case under test.
			w.expect("ok")
			w.wait()
			s.expect("held")
			s.tell("release")
			s.expect("released")
			s.wait()
		}
		h1.wait()
	}
	t.Logf("ErrOwnerDead latency after SIGKILL of a holder that took over while the waiter slept: %s", dist(lats))
}
