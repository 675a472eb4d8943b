// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"errors"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/shm"
)

// TestPlacement: a Lock in the default arena, in a given arena, in a
// given block and in an anonymous segment works across processes, and
// Close frees or keeps the memory as documented.
func TestPlacement(t *testing.T) {
	arena, err := shm.NewArena(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	blk, err := arena.Alloc(LockSize, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer blk.Close()
	seg, err := shm.New(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	tests := []struct {
		name string
		opts []Option
	}{
		{"default", nil},
		{"arena", []Option{InArena(arena)}},
		{"block", []Option{InBlock(blk)}},
		{"segment", []Option{InSegment(seg, 128)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mptest.CheckChildren(t)
			l, err := NewLock(tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Acquire(bg); err != nil {
				t.Fatal(err)
			}
			c := start(t, "lock-foreign", []string{"lock"}, l)
			c.expect("ok")
			l.Release()
			c.tell("go")
			c.wait()
			avail := arena.Available()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, _, err := l.MultiprocHandle(); !errors.Is(err, ErrClosed) {
				t.Fatalf("MultiprocHandle after Close: %v", err)
			}
			switch tt.name {
			case "arena":
				if arena.Available() <= avail {
					t.Fatal("Close did not free the arena block")
				}
			case "block":
				if blk.Bytes() == nil {
					t.Fatal("Close freed the caller's block")
				}
			case "segment":
				if seg.Bytes() == nil {
					t.Fatal("Close closed the caller's segment")
				}
			}
		})
	}
	if _, err := NewLock(InBlock(blk), InSegment(seg, 0)); err == nil {
		t.Fatal("two placements accepted")
	}
	if _, err := NewLock(InSegment(seg, 3)); err == nil {
		t.Fatal("misaligned placement accepted")
	}
	small, err := arena.Alloc(8, 8)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewLock(InBlock(small)); err == nil {
		t.Fatal("a block too small was accepted")
	}
}
