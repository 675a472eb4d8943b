// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/shm"
)

// Layout of the named segment shared with an unrelated process.
const (
	offLock  = 0
	offSem   = 64
	offEvent = 128
	offBar   = 192
	offCond  = 256
)

var _ = mptest.RegisterHelper("named-open", func() {
	// Reaches the primitives by the segment's name alone.
	seg, err := shm.Open(mptest.HelperArgs()[0])
	must(err, "open segment")
	defer seg.Close()
	l, err := OpenLock(seg, offLock)
	must(err, "OpenLock")
	if ok, _ := l.TryAcquire(); ok {
		die("took the parent's lock")
	}
	if l.Owner() != os.Getppid() {
		die("Owner() = %d", l.Owner())
	}
	_, err = OpenLock(seg, offSem)
	wantErr(err, ErrBadHandle, "OpenLock on a semaphore")
	s, err := OpenSemaphore(seg, offSem)
	must(err, "OpenSemaphore")
	must(s.Release(), "release")
	e, err := OpenEvent(seg, offEvent)
	must(err, "OpenEvent")
	must(e.Wait(bg), "event wait")
	b, err := OpenBarrier(seg, offBar)
	must(err, "OpenBarrier")
	if _, err := b.Wait(bg); err != nil {
		die("barrier: %v", err)
	}
	c, err := OpenCondition(seg, offCond, nil)
	must(err, "OpenCondition")
	c.Lock()
	must(c.Notify(1), "notify")
	c.Unlock()
	for _, cl := range []interface{ Close() error }{l, s, e, b, c} {
		must(cl.Close(), "close")
	}
})

// TestNamedSegment: primitives placed in a named segment with InSegment
// are reached by an unrelated process (no handles passed) with Open*.
func TestNamedSegment(t *testing.T) {
	mptest.CheckShm(t, "mp-syncprim-")
	name := fmt.Sprintf("mp-syncprim-%d", os.Getpid())
	seg, err := shm.Create(name, 4096, shm.Untracked())
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Unlink()
	defer seg.Close()
	l, err := NewLock(InSegment(seg, offLock))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSemaphore(0, InSegment(seg, offSem))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEvent(InSegment(seg, offEvent))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBarrier(2, InSegment(seg, offBar))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCondition(nil, InSegment(seg, offCond), MaxWaiters(4))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewLock(InSegment(seg, 4096-8)); err == nil {
		t.Fatal("NewLock past the end of the segment succeeded")
	}
	if err := l.Acquire(bg); err != nil {
		t.Fatal(err)
	}
	p := start(t, "named-open", []string{name})
	if err := s.Acquire(bg); err != nil {
		t.Fatal(err)
	}
	e.Set()
	if _, err := b.Wait(bg); err != nil {
		t.Fatal(err)
	}
	p.wait()
	l.Release()
	for _, cl := range []interface{ Close() error }{l, s, e, b, c} {
		if err := cl.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Closing a primitive placed InSegment leaves the segment to its owner.
	if seg.Bytes() == nil {
		t.Fatal("segment closed by a primitive's Close")
	}
	if _, err := OpenEvent(seg, offEvent); err != nil {
		t.Fatalf("OpenEvent after Close of the creator's handle: %v", err)
	}
	if _, err := OpenEvent(seg, 1000); !errors.Is(err, ErrBadHandle) {
		t.Fatalf("OpenEvent on zeroed memory: %v", err)
	}
}

// FuzzAttach feeds arbitrary handle descriptors (with no files) to every
// MultiprocAttach: never a panic, always an error.
func FuzzAttach(f *testing.F) {
	l, err := NewLock()
	if err != nil {
		f.Fatal(err)
	}
	files, desc, err := l.MultiprocHandle()
	if err != nil {
		f.Fatal(err)
	}
	closeFiles(files)
	l.Close()
	f.Add(desc)
	o, err := NewOwnedSemaphore(3)
	if err != nil {
		f.Fatal(err)
	}
	files, odesc, err := o.MultiprocHandle()
	if err != nil {
		f.Fatal(err)
	}
	closeFiles(files)
	o.Close()
	f.Add(odesc)
	f.Add([]byte{})
	f.Add([]byte{1, 5, 2})
	f.Add(append([]byte{8, 0, 0, 0, 20, 0, 0, 0}, desc...))
	f.Fuzz(func(t *testing.T, desc []byte) {
		for _, a := range []attacher{new(Lock), new(RLock), new(Semaphore), new(Event), new(Condition), new(Barrier), new(OwnedSemaphore)} {
			if err := a.MultiprocAttach(nil, desc); err == nil {
				t.Fatalf("%T attached without files", a)
			}
		}
	})
}
