// SPDX-License-Identifier: Apache-2.0

//go:build linux

package shm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/tracker"
	"golang.org/x/sys/unix"
)

// shm-tracked-creator: a separate process tree that creates two tracked
// segments and an untracked one, prints their names and its tracker's
// pid, and waits (for a SIGKILL) until its stdin closes.
var _ = mptest.RegisterHelper("shm-tracked-creator", func() {
	prefix := mptest.HelperArgs()[0]
	var names []string
	for i, opts := range [][]Option{nil, nil, {Untracked()}} {
		s, err := Create(fmt.Sprintf("%s_%d", prefix, i), 4096, opts...)
		if err != nil {
			childFail(err)
		}
		names = append(names, s.Name())
	}
	fmt.Println(tracker.Pid(), strings.Join(names, " "))
	io.Copy(io.Discard, os.Stdin)
})

// shm-attach-only: a separate process tree, with a tracker of its own
// (started by a scratch Create and Unlink), that attaches to the named
// segment, writes to it and exits without unlinking it.
var _ = mptest.RegisterHelper("shm-attach-only", func() {
	args := mptest.HelperArgs()
	scratch, err := Create(args[1], 64)
	if err != nil {
		childFail(err)
	}
	scratch.Close()
	if err := scratch.Unlink(); err != nil {
		childFail(err)
	}
	s, err := Open(args[0])
	if err != nil {
		childFail(err)
	}
	copy(s.Bytes(), "attached")
	s.Close()
	fmt.Println(tracker.Pid())
})

// waitGone waits (bounded, generously) until process pid has exited: the
// tracker's cleanup is done when it exits.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		t.Fatalf("pidfd_open(%d): %v", pid, err)
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 60_000)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			t.Fatalf("tracker %d still running after 60 s (%v)", pid, err)
		}
		return
	}
}

func shmExists(name string) bool {
	_, err := os.Stat("/dev/shm/" + name)
	return err == nil
}

// A creator SIGKILLed with live named segments leaves nothing in /dev/shm
// but what it created untracked, and the tracker's warning names each
// leaked segment.
func TestKilledCreatorSegmentsUnlinked(t *testing.T) {
	mptest.CheckChildren(t)
	prefix := testName(t)
	logf, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := mptest.HelperCmd(t, "shm-tracked-creator", prefix)
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 4 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper said %q, %v", line, err)
	}
	names := f[1:]
	t.Cleanup(func() {
		for _, n := range names {
			os.Remove("/dev/shm/" + n)
		}
	})
	tpid, _ := strconv.Atoi(f[0])
	if tpid <= 0 {
		t.Fatalf("helper's tracker pid %q", f[0])
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitGone(t, tpid)
	for _, n := range names[:2] {
		if shmExists(n) {
			t.Errorf("%s still in /dev/shm after its creator was SIGKILLed", n)
		}
	}
	if !shmExists(names[2]) {
		t.Errorf("untracked %s was unlinked", names[2])
	}
	b, _ := os.ReadFile(logf.Name())
	t.Logf("the tracker's stderr:\n%s", b)
	for _, n := range names[:2] {
		if !strings.Contains(string(b), n) {
			t.Errorf("no warning names %s; stderr:\n%s", n, b)
		}
	}
	if strings.Contains(string(b), names[2]) {
		t.Errorf("a warning names the untracked %s:\n%s", names[2], b)
	}
}

// gh-82300: a process (of another tree, with its own tracker) that only
// attached to a segment never causes it to be unlinked.
func TestAttachOnlyDoesNotUnlink(t *testing.T) {
	checkLeaks(t)
	name := testName(t)
	s, err := Create(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.Close()
		s.Unlink()
	}()
	out, err := mptest.HelperCmd(t, "shm-attach-only", name, name+"_scratch").Output()
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	tpid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	if tpid <= 0 {
		t.Fatalf("helper's tracker pid %q", out)
	}
	waitGone(t, tpid)
	if !shmExists(name) {
		t.Fatal("the segment was unlinked after a process that only attached exited")
	}
	if got := string(s.Bytes()[:8]); got != "attached" {
		t.Errorf("segment holds %q", got)
	}
	// The creator's tracker holds it; Unlink unregisters it.
	has := func() bool {
		res, err := tracker.List(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Name == name {
				return true
			}
		}
		return false
	}
	if !has() {
		t.Error("the creator's tracker does not list the segment")
	}
	if err := s.Unlink(); err != nil {
		t.Fatal(err)
	}
	if has() {
		t.Error("still listed after Unlink")
	}
}

// An untracked segment is never registered.
func TestUntrackedNotListed(t *testing.T) {
	checkLeaks(t)
	name := testName(t)
	s, err := Create(name, 4096, Untracked())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.Close()
		s.Unlink()
	}()
	res, err := tracker.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Name == name {
			t.Fatalf("untracked segment listed: %+v", r)
		}
	}
}
