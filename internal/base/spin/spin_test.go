// SPDX-License-Identifier: Apache-2.0

package spin

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSpinner(t *testing.T) {
	if !Enabled() {
		if numCPU == 1 {
			testYieldSpin(t, (*Spinner).Spin)
			t.Skip("one CPU: spinning is disabled, Spin yields instead")
		}
		var s Spinner
		if s.Spin(func() bool { return true }) {
			t.Fatal("Spin spun or yielded with GOMAXPROCS=1")
		}
		t.Skip("GOMAXPROCS=1: spinning is disabled")
	}
	var s Spinner
	if !s.Spin(func() bool { return true }) {
		t.Fatal("Spin of a true condition failed")
	}
	// Failures drop the budget to 0; then only probes spin, after 2, 4,
	// ... slow paths.
	spins := 0
	for s.budget.Load() != 0 || spins == 0 {
		s.Spin(func() bool { return false })
		spins++
		if spins > 20 {
			t.Fatalf("budget still %d after %d failed spins", s.budget.Load(), spins)
		}
	}
	calls := 0
	probe := func() bool { calls++; return false }
	s.Spin(probe)
	if calls != 0 {
		t.Fatalf("spun %d times right after spinning was switched off", calls)
	}
	// A successful probe switches spinning back on.
	for i := 0; i < 2*maxBackoff && calls == 0; i++ {
		s.Spin(func() bool { calls++; return true })
	}
	if calls == 0 || s.budget.Load() == 0 {
		t.Fatalf("no probe in %d slow paths (budget %d)", 2*maxBackoff, s.budget.Load())
	}
}

func TestBounded(t *testing.T) {
	if !Enabled() {
		var b Bounded
		if b.Spin(time.Millisecond, func() bool { return true }) {
			t.Fatal("Spin spun with one CPU")
		}
		t.Skip("one CPU: spinning is disabled")
	}
	var b Bounded
	if !b.Spin(time.Millisecond, func() bool { return true }) {
		t.Fatal("Spin of a true condition failed")
	}
	calls := 0
	if b.Spin(100*time.Microsecond, func() bool { calls++; return false }) || calls == 0 {
		t.Fatalf("a false condition: %d calls", calls)
	}
	// A miss skips the next SkipAfterMiss waits without calling done.
	for range SkipAfterMiss {
		if b.Spin(time.Millisecond, func() bool { t.Fatal("done called while skipping"); return true }) {
			t.Fatal("a skipped wait spun")
		}
	}
	if !b.Spin(time.Millisecond, func() bool { return true }) {
		t.Fatal("spinning did not resume after the skips")
	}
}

// TestSpinReadableAcross: a process that runs with GOMAXPROCS=1 (a pool's
// worker) still spins for a descriptor whose writer is another process,
// when more than one CPU is usable, while Spin, whose condition may wait
// for a goroutine of this process, does not spin there.
func TestSpinReadableAcross(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd := int(r.Fd())
	var b Bounded
	if !EnabledAcross() {
		if b.SpinReadable(fd, time.Millisecond) {
			t.Fatal("SpinReadable spun with one CPU or MULTIPROC_SPIN=off")
		}
		w.Close()
		t.Skip("one usable CPU or MULTIPROC_SPIN=off: no spinning")
	}
	if spinMode == 0 && b.Spin(time.Millisecond, func() bool { t.Fatal("Spin called its condition with GOMAXPROCS=1"); return true }) {
		t.Fatal("Spin spun with GOMAXPROCS=1")
	}
	// The writer: another process, started before the spin; it writes
	// one byte and exits.
	cmd := exec.Command("sh", "-c", "printf x")
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	defer cmd.Wait()
	// The bound is a ceiling that proves the spin ends, not a measure:
	// SpinReadable returns as soon as the byte is there.
	if !b.SpinReadable(fd, 30*time.Second) {
		t.Fatal("SpinReadable did not see the other process's byte")
	}
}

func TestReadable(t *testing.T) {
	var p [2]int
	if err := pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	if Readable(p[0]) {
		t.Fatal("an empty pipe is readable")
	}
	write1(p[1])
	if !Readable(p[0]) {
		t.Fatal("a pipe with a byte is not readable")
	}
}

func pipe(p []int) error { return unix.Pipe2(p, unix.O_CLOEXEC) }
func write1(fd int)      { unix.Write(fd, []byte{1}) }

// testYieldSpin: with one usable CPU, Spin checks its condition after
// each of at most YieldTries yields, and after a miss skips the next
// SkipAfterMiss waits (its condition is not called at all).
func testYieldSpin(t *testing.T, spin func(*Spinner, func() bool) bool) {
	if Disabled() {
		var s Spinner
		if spin(&s, func() bool { return true }) {
			t.Fatal("Spin yielded with MULTIPROC_SPIN=off")
		}
		return
	}
	var s Spinner
	calls := 0
	if !spin(&s, func() bool { calls++; return calls == 3 }) || calls != 3 {
		t.Fatalf("Spin of a condition true at the third check: %d checks", calls)
	}
	calls = 0
	if spin(&s, func() bool { calls++; return false }) || calls != YieldTries {
		t.Fatalf("Spin of a false condition: %d checks, want %d", calls, YieldTries)
	}
	calls = 0
	for range SkipAfterMiss {
		if spin(&s, func() bool { calls++; return true }) {
			t.Fatal("Spin yielded right after a miss")
		}
	}
	if calls != 0 || !spin(&s, func() bool { calls++; return true }) || calls != 1 {
		t.Fatalf("after %d skipped waits: %d checks", SkipAfterMiss, calls)
	}
}

// TestYieldSpin runs the one-CPU path whatever the CPU count.
func TestYieldSpin(t *testing.T) { testYieldSpin(t, (*Spinner).yieldSpin) }

func TestSpinLock(t *testing.T) {
	if Disabled() {
		t.Skip("MULTIPROC_SPIN=off")
	}
	if !Enabled() && numCPU > 1 {
		t.Skip("spinning is disabled here (GOMAXPROCS=1)")
	}
	// A lock that comes free and stays free is taken.
	var s Spinner
	looks, takes := 0, 0
	free := func() bool { looks++; return looks > 3 }
	if !s.SpinLock(free, func() bool { takes++; return true }) || takes != 1 {
		t.Fatalf("a lock left free: SpinLock false or %d takes, want true and 1", takes)
	}
	// A lock seen free, then held again when looked at after the delay
	// (its holder took it back at once), is not competed for: SpinLock
	// reports false without trying to take it.
	var h Spinner
	looks, takes = 0, 0
	free = func() bool { looks++; return looks == 1 }
	if h.SpinLock(free, func() bool { takes++; return true }) || takes != 0 {
		t.Fatalf("a lock taken back by its holder: SpinLock true or %d takes, want false and 0", takes)
	}
	if looks != 2 {
		t.Fatalf("a lock taken back by its holder: looked %d times, want 2 (no spinning on after it)", looks)
	}
}
