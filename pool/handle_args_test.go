// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/shm"
)

// Shared-memory handles in task arguments: the data stays in shared
// memory and each task gets a reference to it.
type arrPart struct {
	Arr    *shm.Array[int64]
	Lo, Hi int
}

type segArgs struct {
	Seg  *shm.Segment
	Blk  *shm.Block
	None *shm.Segment // a nil handle
	Tag  string
}

var (
	// fillPart writes i*3+1 at every index of its part and returns the
	// sum of what was there before (0: the parts are disjoint).
	fillPart = pool.Register("test.shmarg.fill", func(ctx context.Context, p arrPart) (int64, error) {
		s := p.Arr.Slice()
		var before int64
		for i := p.Lo; i < p.Hi; i++ {
			before += s[i]
			s[i] = int64(i)*3 + 1
		}
		return before, nil
	})
	// readSeg returns the tag, the segment's first bytes and the block's.
	readSeg = pool.Register("test.shmarg.seg", func(ctx context.Context, a segArgs) (string, error) {
		if a.None != nil {
			return "", errors.New("a nil handle arrived attached")
		}
		return a.Tag + ":" + string(a.Seg.Bytes()[:5]) + ":" + string(a.Blk.Bytes()[:3]), nil
	})
	// killOnce SIGKILLs its worker the first time it sees its part (a
	// mark in the array), with the array attached; it fills it on the
	// retry.
	killOnce = pool.Register("test.shmarg.kill", func(ctx context.Context, p arrPart) (int64, error) {
		s := p.Arr.Slice()
		if s[p.Lo] == 0 && p.Lo%2 == 0 {
			s[p.Lo] = -1
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		for i := p.Lo; i < p.Hi; i++ {
			s[i] = int64(i)*3 + 1
		}
		return 0, nil
	})
)

// shmFDs counts this process's descriptors of anonymous shm segments.
func shmFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Error(err) // called from a goroutine too
		return 0
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "/memfd:multiproc-shm") {
			n++
		}
	}
	return n
}

// shmMappings counts this process's mappings of anonymous shm segments.
func shmMappings(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "memfd:multiproc-shm")
}

// TestShmHandleArgs: a Map whose tasks write disjoint parts of one shm
// Array, checked by the parent; a segment (named), an arena block and a
// nil handle in a struct with a plain field; the call's descriptors are
// closed when it returns, one per distinct handle while it runs.
func TestShmHandleArgs(t *testing.T) {
	// The named segment first: its creation starts the tree's resource
	// tracker (a process and a pipe that live on), which the leak checks
	// must not count.
	seg, err := shm.Create("mp-test-shmarg", 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Unlink()
	defer seg.Close()
	mptest.CheckFDs(t)
	mptest.CheckShm(t)
	ctx := testCtx(t)
	const n, parts = 1 << 20, 16
	arr, err := shm.NewArray[int64](n)
	if err != nil {
		t.Fatal(err)
	}
	defer arr.Close()
	p := newPool(t, pool.Workers(2))
	fds := shmFDs(t)
	var in []arrPart
	for i := range parts {
		in = append(in, arrPart{Arr: arr, Lo: i * n / parts, Hi: (i + 1) * n / parts})
	}
	// One descriptor per distinct handle while the call runs.
	stop := make(chan struct{})
	most := make(chan int)
	go func() {
		m := 0
		for {
			select {
			case <-stop:
				most <- m
				return
			default:
				m = max(m, shmFDs(t)-fds)
			}
		}
	}()
	got, err := fillPart.Map(ctx, p, in, pool.Chunksize(1))
	close(stop)
	if m := <-most; m > 1 {
		t.Errorf("%d descriptors of the one array open during the Map", m)
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		if b != 0 {
			t.Fatalf("part %d saw %d written before it: parts overlap", i, b)
		}
	}
	for i, v := range arr.Slice() {
		if v != int64(i)*3+1 {
			t.Fatalf("arr[%d] = %d, want %d", i, v, int64(i)*3+1)
		}
	}
	if k := shmFDs(t); k != fds {
		t.Fatalf("%d descriptors open after the Map, %d before", k, fds)
	}

	copy(seg.Bytes(), "hello")
	arena, err := shm.NewArena(1 << 16)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	blk, err := arena.Alloc(64, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer blk.Close()
	copy(blk.Bytes(), "blk")
	s, err := readSeg.Apply(ctx, p, segArgs{Seg: seg, Blk: blk, Tag: "t"})
	if err != nil || s != "t:hello:blk" {
		t.Fatalf("segment and block: %q, %v", s, err)
	}
	// ThreadPool: the same handles, in this process.
	tp, err := pool.NewThreadPool(ctx, pool.Workers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Terminate()
	if s, err := readSeg.Apply(ctx, tp, segArgs{Seg: seg, Blk: blk, Tag: "t"}); err != nil || s != "t:hello:blk" {
		t.Fatalf("ThreadPool: %q, %v", s, err)
	}
	p.Terminate()
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestShmHandleArgKilled: workers SIGKILLed mid-task with the array
// attached; the tasks are retried and complete, and once the pool and the
// array are gone no descriptor, mapping, child or /dev/shm entry is left.
func TestShmHandleArgKilled(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckShm(t)
	mptest.CheckChildren(t)
	ctx := testCtx(t)
	const n, parts = 1 << 16, 8
	arr, err := shm.NewArray[int64](n)
	if err != nil {
		t.Fatal(err)
	}
	maps := shmMappings(t)
	p, err := pool.New(ctx, pool.Workers(2), pool.Retries(2))
	if err != nil {
		t.Fatal(err)
	}
	var in []arrPart
	for i := range parts {
		in = append(in, arrPart{Arr: arr, Lo: i * n / parts, Hi: (i + 1) * n / parts})
	}
	before := p.Pids()
	if len(before) == 0 {
		t.Fatal("no worker pids")
	}
	if _, err := killOnce.Map(ctx, p, in, pool.Chunksize(1)); err != nil {
		t.Fatal(err)
	}
	for _, pid := range p.Pids() {
		if slices.Contains(before, pid) {
			t.Fatalf("worker %d lived through the Map: no task killed it", pid)
		}
	}
	for i, v := range arr.Slice() {
		if v != int64(i)*3+1 {
			t.Fatalf("arr[%d] = %d, want %d", i, v, int64(i)*3+1)
		}
	}
	p.Terminate()
	if err := p.Join(ctx); err != nil {
		t.Fatal(err)
	}
	arr.Close()
	if k := shmMappings(t); k != maps-1 {
		t.Fatalf("%d shm mappings after closing the array, %d with it", k, maps)
	}
}
