// SPDX-License-Identifier: Apache-2.0

package futex

import (
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestWaitWake(t *testing.T) {
	var w uint32 = 1
	// A changed word returns at once.
	if err := Wait(&w, 0, Forever); err != nil {
		t.Fatalf("Wait on a changed word: %v", err)
	}
	if err := Wait(&w, 1, time.Millisecond); err != ErrTimeout {
		t.Fatalf("Wait with a timeout: %v", err)
	}
	done := make(chan error)
	go func() {
		for atomic.LoadUint32(&w) == 1 {
			if err := Wait(&w, 1, Forever); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	atomic.StoreUint32(&w, 2)
	Wake(&w, 1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := WakeAll(&w); n != 0 {
		t.Fatalf("WakeAll woke %d with nobody waiting", n)
	}
}

func TestSelfAlive(t *testing.T) {
	me := Self()
	if me.Pid() != os.Getpid() || uint64(me)>>32 == 0 {
		t.Fatalf("Self() = %#x", uint64(me))
	}
	if !Alive(me) || !Exists(me) {
		t.Fatal("this process is not alive")
	}
	if Alive(0) || Exists(0) {
		t.Fatal("ID 0 is alive")
	}
	// The parent (go test) runs, with its real start time.
	st, _, ok := procStat(os.Getppid())
	if !ok {
		t.Fatal("cannot read the parent's stat")
	}
	parent := ID(uint64(uint32(os.Getppid())) | uint64(uint32(st))<<32)
	if !Alive(parent) {
		t.Fatal("parent not alive")
	}
	// The same pid with another start time is a different, dead process.
	if Alive(parent + 1<<32) {
		t.Fatal("pid with a wrong start time counted as alive")
	}
	// A child that exited: dead while a zombie, and after it is reaped.
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	pid := cmd.Process.Pid
	cst, _, ok := procStat(pid)
	if !ok {
		// It exited and was... not reaped yet, so this cannot happen;
		// still, do not guess.
		cmd.Wait()
		t.Skip("child vanished before its stat was read")
	}
	child := ID(uint64(uint32(pid)) | uint64(uint32(cst))<<32)
	// Wait for it to exit without reaping it: a zombie.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if _, state, _ := procStat(pid); state != 'Z' {
		t.Fatalf("child state %q, want a zombie", state)
	}
	if Alive(child) {
		t.Fatal("zombie child counted as alive")
	}
	cmd.Wait()
	if Alive(child) || Exists(child) {
		t.Fatal("reaped child counted as alive")
	}
}
