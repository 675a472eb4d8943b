// SPDX-License-Identifier: Apache-2.0

//go:build linux

package shm_test

import (
	"errors"
	"fmt"
	"io/fs"
	"log"

	"github.com/multiproc/multiproc/shm"
)

// Create a named segment, attach to it by name (as another process, or a
// Python process, would), then unlink it.
func Example() {
	seg, err := shm.Create("", 1<<20) // "" picks a psm_xxxxxxxx name
	if err != nil {
		log.Fatal(err)
	}
	copy(seg.Bytes(), "hello")

	other, err := shm.Open(seg.Name()) // the size comes from the segment
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(other.Bytes()[:5]), other.Size())
	other.Close()

	seg.Close()
	fmt.Println(seg.Unlink())
	err = seg.Unlink()
	fmt.Println(errors.Is(err, fs.ErrNotExist))
	_, err = shm.Open(seg.Name())
	fmt.Println(errors.Is(err, fs.ErrNotExist))
	// Output:
	// hello 1048576
	// <nil>
	// true
	// true
}

// A Value handed to a child process: the process package calls
// MultiprocHandle in the parent and MultiprocAttach in the child. Here
// both ends are in one process to show the contract.
func ExampleValue_MultiprocHandle() {
	counter, err := shm.NewValue[int64](0) // anonymous: cannot leak
	if err != nil {
		log.Fatal(err)
	}
	defer counter.Close()

	files, desc, err := counter.MultiprocHandle() // parent side
	if err != nil {
		log.Fatal(err)
	}
	var child shm.Value[int64] // child side: takes ownership of files
	if err := child.MultiprocAttach(files, desc); err != nil {
		log.Fatal(err)
	}
	child.Add(40)
	child.Add(2)
	child.Close()

	fmt.Println(counter.Load(), counter.Atomic())
	// Output: 42 true
}

// Types that hold pointers are refused at construction.
func ExampleNewValue_pointerTypes() {
	type Job struct {
		ID   int64
		Name string
	}
	_, err := shm.NewValue(Job{})
	fmt.Println(err)
	// Output: shm: type shm_test.Job cannot be shared: Job.Name is a string, which holds a pointer
}

func ExampleNewArray() {
	a, err := shm.NewArray[float64](4) // zero-filled
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	s := a.Slice() // a view of the shared memory, not a copy
	for i := range s {
		s[i] = float64(i) * 1.5
	}
	fmt.Println(a.Len(), a.At(3))
	// Output: 4 4.5
}

// CPython's reference list, with its layout and format string.
func ExampleNewShareableList() {
	l, err := shm.NewShareableList("", []any{"howdy", []byte("HoWdY"), -273.154, 100, nil, true, 42})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Unlink()
	defer l.Close()
	fmt.Println(l.Len(), l.Segment().Size(), l.Format())

	if err := l.Set(3, "adios"); err != nil { // an int slot can hold up to 8 bytes
		log.Fatal(err)
	}
	err = l.Set(0, "much too long")
	fmt.Println(err)
	items, _ := l.Items()
	for _, it := range items {
		fmt.Printf("%T %v\n", it, it)
	}
	// Output:
	// 7 191 8s8sdqxxxxxx?xxxxxxxx?q
	// shm: bytes/str item exceeds available storage: item 0 has 8 bytes of storage, the value needs 13
	// string howdy
	// []uint8 [72 111 87 100 89]
	// float64 -273.154
	// string adios
	// <nil> <nil>
	// bool true
	// int64 42
}

// Interop with CPython: a list created by Go is a ShareableList for
// Python, and the other way round.
//
// Go creates, Python reads and writes:
//
//	l, _ := shm.NewShareableList("", []any{"hello", 1.5, 7})
//	// python3:
//	//   from multiprocessing import shared_memory
//	//   sl = shared_memory.ShareableList(name="<l.Name()>")
//	//   sl[2] = 8
//	//   sl.shm.close()
//
// Python creates, Go reads and writes:
//
//	// python3: sl = shared_memory.ShareableList([1, "two"], name="mylist")
//	l, _ := shm.OpenShareableList("mylist")
//	v, _ := l.Get(1) // "two"
//
// Python (before 3.13) registers every SharedMemory it attaches to with
// its resource tracker, which unlinks the segment when that Python process
// exits (gh-82300). Attach with SharedMemory(name, track=False) on 3.13,
// or call resource_tracker.unregister(shm._name, "shared_memory") on
// older versions, when Go owns the segment.
func ExampleOpenShareableList() {
	l, err := shm.NewShareableList("", []any{1, "two"})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Unlink()
	defer l.Close()

	other, err := shm.OpenShareableList(l.Name()) // as Python would
	if err != nil {
		log.Fatal(err)
	}
	defer other.Close()
	other.Set(0, 2.5)
	v, _ := l.Get(0)
	fmt.Println(v, other.Format())
	// Output: 2.5 d8s
}

// Many small shared objects in one segment: one fd and one mapping for
// all of them, in this process and in every child that receives them.
func ExampleArena() {
	arena, err := shm.NewArena(64 << 10)
	if err != nil {
		log.Fatal(err)
	}
	defer arena.Close()

	var counters []*shm.Value[uint32]
	for range 1000 {
		v, err := shm.AllocValue[uint32](arena, 0)
		if err != nil {
			log.Fatal(err)
		}
		defer v.Close() // frees the block
		counters = append(counters, v)
	}
	counters[999].Add(1)

	b, err := arena.Alloc(64, 64) // raw, cache-line aligned, zeroed
	if err != nil {
		log.Fatal(err)
	}
	defer arena.Free(b)
	fmt.Println(counters[999].Load(), b.Offset()%64, b.Size())
	// Output: 1 0 64
}

// A Scope is CPython's SharedMemoryManager: every named segment made
// through it is unlinked by one Close (and by the resource tracker if the
// program dies first).
func ExampleScope() {
	sc := shm.NewScope()
	defer sc.Close()

	seg, err := shm.Create("", 128, shm.InScope(sc))
	if err != nil {
		log.Fatal(err)
	}
	defer seg.Close()
	l, err := shm.NewShareableList("", []any{"howdy", 42}, shm.InScope(sc))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	fmt.Println(len(sc.Names()), "segments in the scope")

	if err := sc.Close(); err != nil {
		log.Fatal(err)
	}
	_, err = shm.Open(seg.Name())
	fmt.Println(errors.Is(err, fs.ErrNotExist))
	// Output:
	// 2 segments in the scope
	// true
}
