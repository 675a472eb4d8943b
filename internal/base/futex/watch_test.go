// SPDX-License-Identifier: Apache-2.0

package futex

import (
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// childID starts a process that sleeps and returns it with its ID.
func childID(t *testing.T) (*exec.Cmd, ID) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	st, _, ok := procStat(cmd.Process.Pid)
	if !ok {
		t.Fatal("cannot read the child's stat")
	}
	return cmd, ID(uint64(uint32(cmd.Process.Pid)) | uint64(uint32(st))<<32)
}

// waitGoroutines waits until at most n goroutines run (a generous
// ceiling, not a timing condition).
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); runtime.NumGoroutine() > n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, want at most %d: a watch goroutine leaked", runtime.NumGoroutine(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWatchExit: a SIGKILLed process's watch bumps and wakes every word
// registered with it, while a FUTEX_WAIT sleeps on it with no timeout.
func TestWatchExit(t *testing.T) {
	base := runtime.NumGoroutine()
	cmd, id := childID(t)
	var w1, w2 uint32
	a, dead := WatchExit(id, &w1)
	if a == nil || dead {
		t.Skipf("no exit watch on this system (dead=%v)", dead)
	}
	b, _ := WatchExit(id, &w2)
	if b == nil || b.e != a.e {
		t.Fatal("a second watch on the same process did not share its pidfd")
	}
	woke := make(chan error)
	go func() {
		for atomic.LoadUint32(&w1) == 0 {
			if err := Wait(&w1, 0, Forever); err != nil {
				woke <- err
				return
			}
		}
		woke <- nil
	}()
	time.Sleep(10 * time.Millisecond)
	if a.Fired() {
		t.Fatal("fired while the process runs")
	}
	cmd.Process.Kill() // not reaped: a zombie has exited too
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the sleeper was not woken 30 s after the watched process was killed")
	}
	if !a.Fired() || !b.Fired() {
		t.Fatalf("woken, but fired %v %v", a.Fired(), b.Fired())
	}
	for atomic.LoadUint32(&w2) == 0 {
		// The second word is bumped right after the first.
		if err := Wait(&w2, 0, 30*time.Second); err == ErrTimeout {
			t.Fatal("the second registered word was not bumped")
		}
	}
	a.Stop()
	b.Stop()
	// A watch on the dead (zombie) process reports it dead at once.
	if w, dead := WatchExit(id, &w1); w != nil || !dead {
		t.Fatalf("WatchExit of a zombie: %v %v", w, dead)
	}
	cmd.Wait()
	if w, dead := WatchExit(id, &w1); w != nil || !dead {
		t.Fatalf("WatchExit of a reaped process: %v %v", w, dead)
	}
	waitGoroutines(t, base)
}

// TestWatchStop: stopped watches close their pidfd and end their
// goroutine, and never touch the word again.
func TestWatchStop(t *testing.T) {
	base := runtime.NumGoroutine()
	cmd, id := childID(t)
	var word uint32
	w, _ := WatchExit(id, &word)
	if w == nil {
		t.Skip("no exit watch on this system")
	}
	w2, _ := WatchExit(id, &word)
	w.Stop()
	if _, ok := watches.m[id]; !ok {
		t.Fatal("watch closed while a registration remains")
	}
	w2.Stop()
	waitGoroutines(t, base)
	watches.Lock()
	n := len(watches.m)
	watches.Unlock()
	if n != 0 {
		t.Fatalf("%d watches remain", n)
	}
	cmd.Process.Kill()
	cmd.Wait()
	time.Sleep(10 * time.Millisecond)
	if atomic.LoadUint32(&word) != 0 {
		t.Fatal("a stopped watch bumped its word")
	}
	// Watching oneself is refused (it could never fire), without a
	// verdict of death.
	if w, dead := WatchExit(Self(), &word); w != nil || dead {
		t.Fatalf("WatchExit(Self()): %v %v", w, dead)
	}
	// A pid reused by another process (same pid, other start time) is dead.
	if w, dead := WatchExit(id+1<<32, &word); w != nil || !dead {
		t.Fatalf("WatchExit with a wrong start time: %v %v", w, dead)
	}
}
