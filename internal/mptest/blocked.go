// SPDX-License-Identifier: Apache-2.0

package mptest

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// BlockedCeiling bounds WaitBlocked: a generous ceiling that proves the
// wait is not indefinite, never a pass condition.
const BlockedCeiling = 30 * time.Second

// WaitBlocked waits until a goroutine of this process whose stack names fn
// (for example "ipc.(*Listener).Accept") is blocked, and fails the test
// when none is within BlockedCeiling. A test calls it before cancelling or
// closing what the goroutine waits on, so that the "woken while blocked"
// case is the one exercised, not an early return.
//
// Blocked means: the same goroutine seen twice in a row, a few
// milliseconds apart, in a state the runtime gives a parked goroutine
// ("IO wait", "select", "chan receive", "semacquire", ...), or in a system
// call while a thread of this process sleeps in the kernel on something
// other than the runtime's own futexes and epoll (poll(2), a full pipe,
// a socket).
func WaitBlocked(t testing.TB, fn string) {
	t.Helper()
	WaitBlockedN(t, fn, 1)
}

// WaitBlockedN is WaitBlocked for n goroutines blocked in fn at once.
func WaitBlockedN(t testing.TB, fn string, n int) {
	t.Helper()
	deadline := time.Now().Add(BlockedCeiling)
	var prev map[string]string
	for {
		cur := goroutinesIn(fn)
		blocked := 0
		for id, state := range cur {
			if prev[id] != state {
				continue
			}
			if state != "syscall" || threadSleepsInKernel() {
				blocked++
			}
		}
		if blocked >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mptest: %d of %d goroutines blocked in %s after %v (seen: %v)", blocked, n, fn, BlockedCeiling, cur)
		}
		prev = cur
		time.Sleep(5 * time.Millisecond)
	}
}

// parkedStates are the goroutine states of runtime.Stack that mean the
// goroutine waits for something, plus "syscall", checked further.
var parkedStates = map[string]bool{
	"IO wait": true, "select": true, "select (no cases)": true,
	"chan receive": true, "chan send": true, "chan receive (nil chan)": true,
	"semacquire": true, "sync.Mutex.Lock": true, "sync.RWMutex.Lock": true,
	"sync.RWMutex.RLock": true, "sync.Cond.Wait": true, "sync.WaitGroup.Wait": true,
	"syscall": true,
}

// goroutinesIn returns, by goroutine id, the state of each goroutine whose
// stack names fn and whose state is a parked one.
func goroutinesIn(fn string) map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		head, body, _ := bytes.Cut(g, []byte("\n"))
		// "goroutine 7 [IO wait, 2 minutes]:"
		h := string(head)
		rest, ok := strings.CutPrefix(h, "goroutine ")
		if !ok {
			continue
		}
		id, state, ok := strings.Cut(rest, " [")
		if !ok {
			continue
		}
		state = strings.TrimSuffix(state, "]:")
		state, _, _ = strings.Cut(state, ",")
		if parkedStates[state] && bytes.Contains(body, []byte(fn)) {
			out[id] = state
		}
	}
	return out
}

// threadSleepsInKernel reports whether a thread of this process sleeps in
// the kernel in something other than the Go runtime's idle waits.
func threadSleepsInKernel() bool {
	tasks, _ := filepath.Glob("/proc/self/task/*")
	for _, task := range tasks {
		stat, err := os.ReadFile(filepath.Join(task, "stat"))
		if err != nil {
			continue
		}
		// The state follows the command, which is in parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) || stat[i+2] != 'S' {
			continue
		}
		wchan, err := os.ReadFile(filepath.Join(task, "wchan"))
		if err != nil {
			continue
		}
		w := string(wchan)
		switch {
		case w == "" || w == "0",
			strings.HasPrefix(w, "futex"),                                // idle Ms, locks
			strings.Contains(w, "ep_poll"), strings.Contains(w, "epoll"), // the netpoller
			strings.Contains(w, "nanosleep"), strings.Contains(w, "hrtimer"):
			continue
		}
		return true
	}
	return false
}
