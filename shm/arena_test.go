// SPDX-License-Identifier: Apache-2.0

//go:build linux

package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
)

// mapsOf counts this process's mappings of the file with inode ino.
func mapsOf(t testing.TB, ino uint64) int {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		if t == nil {
			childFail(err)
		}
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && f[4] == strconv.FormatUint(ino, 10) {
			n++
		}
	}
	return n
}

// fdsOf counts this process's fds open on the file with inode ino.
func fdsOf(ino uint64) int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		st, err := os.Stat(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue
		}
		if s, ok := statIno(st); ok && s == ino {
			n++
		}
	}
	return n
}

func inoOf(t testing.TB, s *Segment) uint64 {
	key, _, err := sysFileID(s.fd)
	if err != nil {
		t.Fatal(err)
	}
	return key.ino
}

func TestArenaAllocFree(t *testing.T) {
	checkLeaks(t)
	a, err := NewArena(1)
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	if a.Segment().Size() != ps || a.Available() != ps {
		t.Fatalf("size %d available %d, want a page", a.Segment().Size(), a.Available())
	}
	b1, err := a.Alloc(ps/2, 0)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := a.Alloc(ps/2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Alloc(1, 0); !errors.Is(err, ErrArenaFull) {
		t.Fatalf("Alloc in a full arena: %v", err)
	}
	for i := range b1.Bytes() {
		b1.Bytes()[i] = 0xff
	}
	if err := a.Free(b1); err != nil {
		t.Fatal(err)
	}
	if err := a.Free(b1); err == nil {
		t.Error("double Free accepted")
	}
	if b1.Bytes() != nil {
		t.Error("Bytes of a freed block is not nil")
	}
	// Reuse: zeroed, aligned.
	b3, err := a.Alloc(100, 64)
	if err != nil {
		t.Fatal(err)
	}
	if b3.Offset()%64 != 0 || uintptr(b3.Pointer())%64 != 0 || b3.Size() != 100 {
		t.Errorf("offset %d pointer %p size %d", b3.Offset(), b3.Pointer(), b3.Size())
	}
	if slices.ContainsFunc(b3.Bytes(), func(c byte) bool { return c != 0 }) {
		t.Error("reused block is not zeroed")
	}
	for _, bad := range [][2]int{{0, 8}, {-1, 8}, {8, 3}, {8, -8}, {8, 2 * ps}} {
		if _, err := a.Alloc(bad[0], bad[1]); err == nil {
			t.Errorf("Alloc(%d, %d) accepted", bad[0], bad[1])
		}
	}
	// Freed neighbours merge: after freeing everything one block of the
	// whole arena fits again.
	a.Free(b3)
	b2.Close() // Close of an allocated block is Free
	if a.Available() != ps {
		t.Errorf("available %d after freeing everything", a.Available())
	}
	whole, err := a.Alloc(ps, 0)
	if err != nil {
		t.Fatalf("whole-arena Alloc after frees: %v", err)
	}
	other, _ := NewArena(1)
	ob, _ := other.Alloc(8, 0)
	if err := a.Free(ob); err == nil {
		t.Error("Free of another arena's block accepted")
	}
	other.Free(ob)
	other.Close()

	// Close keeps allocated blocks valid until they are freed.
	ino := inoOf(t, a.Segment())
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Alloc(8, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Alloc after Close: %v", err)
	}
	whole.Bytes()[0] = 1
	if mapsOf(t, ino) != 1 {
		t.Errorf("arena unmapped while a block is live")
	}
	a.Free(whole)
	if n := mapsOf(t, ino); n != 0 {
		t.Errorf("arena still mapped %d times after Close and the last Free", n)
	}
}

func TestArenaConcurrentAlloc(t *testing.T) {
	checkLeaks(t)
	a, err := NewArena(64 << 10)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const workers, each = 8, 200
	blocks := make([][]*Block, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				b, err := a.Alloc(8+8*(i%4), 8)
				if err != nil {
					t.Error(err)
					return
				}
				binary.LittleEndian.PutUint64(b.Bytes(), uint64(w*each+i))
				blocks[w] = append(blocks[w], b)
				if i%3 == 0 { // free some while others allocate
					a.Free(b)
					blocks[w] = blocks[w][:len(blocks[w])-1]
				}
			}
		})
	}
	wg.Wait()
	var all []*Block
	for _, bs := range blocks {
		all = append(all, bs...)
	}
	slices.SortFunc(all, func(x, y *Block) int { return x.Offset() - y.Offset() })
	for i, b := range all {
		if i > 0 && all[i-1].Offset()+all[i-1].Size() > b.Offset() {
			t.Fatalf("blocks overlap: [%d,+%d) and [%d,+%d)", all[i-1].Offset(), all[i-1].Size(), b.Offset(), b.Size())
		}
	}
	for w, bs := range blocks {
		for _, b := range bs {
			v := binary.LittleEndian.Uint64(b.Bytes())
			if int(v)/each != w {
				t.Fatalf("block of worker %d holds %d", w, v)
			}
			a.Free(b)
		}
	}
	if a.Available() != a.Segment().Size() {
		t.Errorf("available %d of %d after freeing all", a.Available(), a.Segment().Size())
	}
}

// The child receives 1000 Blocks of one arena, maps it once, and keeps one
// fd.
var _ = mptest.RegisterHelper("shm-arena-1000", func() {
	bs := make([]Block, len(mptest.HelperArgs()))
	as := make([]attacher, len(bs))
	for i := range bs {
		as[i] = &bs[i]
	}
	childAttach(as...)
	for i := range bs {
		p := (*uint32)(bs[i].Pointer())
		if *p != uint32(i) {
			childFail(fmt.Errorf("block %d holds %d", i, *p))
		}
		*p = uint32(i) * 2
	}
	ino := bs[0].m.key.ino
	fmt.Printf("blocks=%d maps=%d fds=%d ", len(bs), mapsOf(nil, ino), fdsOf(ino))
	for i := range bs {
		bs[i].Close()
	}
	fmt.Printf("after=%d\n", mapsOf(nil, ino))
})

func TestArena1000BlocksToChild(t *testing.T) {
	checkLeaks(t)
	mptest.CheckChildren(t)
	a, err := NewArena(1000 * 64)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	bs := make([]handler, 1000)
	for i := range bs {
		b, err := a.Alloc(4, 64)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Free(b)
		*(*uint32)(b.Pointer()) = uint32(i)
		bs[i] = b
	}
	out := runChild(t, "shm-arena-1000", bs...)
	if want := "blocks=1000 maps=1 fds=1 after=0\n"; out != want {
		t.Errorf("child reported %q, want %q", out, want)
	}
	for i, h := range bs {
		if got := *(*uint32)(h.(*Block).Pointer()); got != uint32(2*i) {
			t.Fatalf("block %d: %d after the child, want %d", i, got, 2*i)
		}
	}
}

// In one process, attaching blocks of an arena it created reuses the
// creator's mapping.
func TestArenaAttachSameProcess(t *testing.T) {
	checkLeaks(t)
	a, err := NewArena(4096)
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.Alloc(16, 0)
	if err != nil {
		t.Fatal(err)
	}
	files, desc, err := b.MultiprocHandle()
	if err != nil {
		t.Fatal(err)
	}
	var c Block
	if err := c.MultiprocAttach(files, desc); err != nil {
		t.Fatal(err)
	}
	if c.Pointer() != b.Pointer() || mapsOf(t, inoOf(t, a.Segment())) != 1 {
		t.Error("attached block does not share the creator's mapping")
	}
	if err := c.MultiprocAttach(nil, nil); err == nil {
		t.Error("second MultiprocAttach accepted")
	}
	c.Close()
	a.Free(b)
	a.Close()
	var d Block
	if err := d.MultiprocAttach(nil, []byte{1}); !errors.Is(err, ErrBadHandle) {
		t.Errorf("bad handle: %v", err)
	}
}

func statIno(st os.FileInfo) (uint64, bool) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino, true
	}
	return 0, false
}

// FuzzHandleDescriptor feeds arbitrary descriptors, with a real memfd, to
// every MultiprocAttach: none may panic, map outside the segment or leak
// the file.
func FuzzHandleDescriptor(f *testing.F) {
	a, err := NewArena(8192)
	if err != nil {
		f.Fatal(err)
	}
	defer a.Close()
	b, err := a.Alloc(64, 8)
	if err != nil {
		f.Fatal(err)
	}
	defer a.Free(b)
	v, err := AllocValue[int64](a, 1)
	if err != nil {
		f.Fatal(err)
	}
	defer v.Close()
	arr, err := NewArray[uint16](10)
	if err != nil {
		f.Fatal(err)
	}
	defer arr.Close()
	for _, h := range []handler{b, v, arr, arr.Segment()} {
		files, desc, err := h.MultiprocHandle()
		if err != nil {
			f.Fatal(err)
		}
		closeFiles(files)
		f.Add(desc)
	}
	seg := a.Segment()
	ino := inoOf(f, seg)
	f.Fuzz(func(t *testing.T, desc []byte) {
		before := fdsOf(ino)
		try := func(at attacher) {
			fl, err := seg.dupFile()
			if err != nil {
				t.Fatal(err)
			}
			if err := at.MultiprocAttach([]*os.File{fl}, desc); err == nil {
				at.(interface{ Close() error }).Close()
			}
		}
		try(new(Value[int64]))
		try(new(Array[uint16]))
		try(new(Block))
		try(new(Segment))
		try(new(ShareableList))
		if after := fdsOf(ino); after != before {
			t.Fatalf("%d fds on the arena before, %d after", before, after)
		}
	})
}
