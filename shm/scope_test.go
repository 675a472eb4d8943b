// SPDX-License-Identifier: Apache-2.0

//go:build linux

package shm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/tracker"
)

// Close unlinks every named segment created through the scope (a
// Segment, a Value, an Array, a ShareableList), skips one unlinked
// already, and leaves the mappings usable.
func TestScopeCloseUnlinks(t *testing.T) {
	checkLeaks(t)
	sc := NewScope()
	seg, err := Create("", 4096, InScope(sc))
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	v, err := CreateValue("", int64(41), InScope(sc))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	a, err := CreateArray[float64]("", 8, InScope(sc))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	l, err := NewShareableList("", []any{1, "two", 3.0}, InScope(sc))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	early, err := Create(testName(t), 64, InScope(sc))
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	// Outside the scope: Close leaves it alone.
	outside, err := Create(testName(t), 64)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		outside.Close()
		outside.Unlink()
	}()

	want := []string{seg.Name(), v.Segment().Name(), a.Segment().Name(), l.Segment().Name(), early.Name()}
	if got := sc.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	for _, n := range want {
		if !shmExists(n) {
			t.Fatalf("%s not in /dev/shm", n)
		}
	}
	if err := early.Unlink(); err != nil {
		t.Fatal(err)
	}
	if got := sc.Names(); slices.Contains(got, early.Name()) {
		t.Fatalf("an unlinked segment is still in the scope: %v", got)
	}
	// Another process (or Python) may unlink one behind the scope's back.
	if err := sysUnlink(seg.Name()); err != nil {
		t.Fatal(err)
	}

	if err := sc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, n := range want {
		if shmExists(n) {
			t.Errorf("%s still in /dev/shm after the scope's Close", n)
		}
	}
	if !shmExists(outside.Name()) {
		t.Error("Close unlinked a segment created outside the scope")
	}
	// The objects still work: Close unlinks, it does not unmap.
	if n := v.Add(1); n != 42 {
		t.Errorf("Value after the scope's Close: %d", n)
	}
	// The tracker no longer holds them.
	res, err := tracker.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if slices.Contains(want, r.Name) {
			t.Errorf("the tracker still lists %s", r.Name)
		}
	}
	if err := sc.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// A closed scope creates nothing.
	if _, err := Create("", 64, InScope(sc)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Create in a closed scope: %v, want ErrClosed", err)
	}
	if _, err := Create("", 64, InScope(NewScope()), Untracked()); err == nil {
		t.Fatal("InScope with Untracked succeeded")
	}
}

// shm-scope-creator: a separate process tree that creates segments
// through a scope, prints its tracker's pid and their names, and waits
// (for a SIGKILL) until its stdin closes.
var _ = mptest.RegisterHelper("shm-scope-creator", func() {
	sc := NewScope()
	if _, err := Create("", 4096, InScope(sc)); err != nil {
		childFail(err)
	}
	if _, err := CreateValue("", uint64(7), InScope(sc)); err != nil {
		childFail(err)
	}
	if _, err := NewShareableList("", []any{"a", 1}, InScope(sc)); err != nil {
		childFail(err)
	}
	fmt.Println(tracker.Pid(), strings.Join(sc.Names(), " "))
	io.Copy(io.Discard, os.Stdin)
	sc.Close()
})

// A program SIGKILLed before its scope's Close leaves nothing in
// /dev/shm: the tracker unlinks the scope's segments.
func TestScopeKilledCreator(t *testing.T) {
	mptest.CheckChildren(t)
	cmd := mptest.HelperCmd(t, "shm-scope-creator")
	cmd.Stderr = io.Discard // the tracker's warnings name the segments
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
	for _, n := range names {
		if !shmExists(n) {
			t.Fatalf("%s not in /dev/shm while its creator runs", n)
		}
	}
	tpid, _ := strconv.Atoi(f[0])
	if tpid <= 0 {
		t.Fatalf("helper's tracker pid %q", f[0])
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitGone(t, tpid)
	for _, n := range names {
		if shmExists(n) {
			t.Errorf("%s still in /dev/shm after its creator was SIGKILLed", n)
		}
	}
}
