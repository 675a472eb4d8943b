// SPDX-License-Identifier: Apache-2.0

// Package shm is shared memory for multiproc: segments that several
// processes map, typed values and arrays in them, CPython-compatible
// ShareableLists, and arenas for many small shared objects.
//
// # Segments
//
// A Segment is either anonymous or named.
//
//   - New creates an anonymous segment: a sealed memfd. It has no name, is
//     handed to child processes by file descriptor (the process package
//     does this for any argument with MultiprocHandle/MultiprocAttach), and
//     cannot leak: the kernel frees it when the last process holding it
//     closes it or exits, however it exits.
//   - Create makes a named segment, /dev/shm/<name>, with CPython's flags
//     (O_CREAT|O_EXCL|O_RDWR, mode 0600) and naming ("psm_" and 8 hex
//     digits when no name is given). Open attaches to one by name, taking
//     its size from the file, and Unlink removes it. A Python process
//     attaches with multiprocessing.shared_memory.SharedMemory(name=...)
//     and sees the same bytes, and Go attaches to segments Python created.
//
// Errors follow CPython's cases: creating an existing name matches
// fs.ErrExist (FileExistsError), opening or unlinking a missing one matches
// fs.ErrNotExist (FileNotFoundError, also for a second Unlink), a size of
// zero or less is ErrInvalidSize (ValueError), and a name that is empty,
// holds "/" or NUL, or is longer than 255 bytes is ErrInvalidName.
//
// Named segments and the resource tracker: a named segment outlives its
// creator until someone unlinks it. Create registers it with the process
// tree's resource tracker (package tracker), a daemon started by the
// first Create of the tree and shared by every process the tree starts
// through the process package: once every process of the tree has ended
// (exited, crashed or SIGKILLed) without unlinking the segment, the
// tracker unlinks it and logs a warning naming it on its standard error.
// Unlink unregisters it. Create with Untracked (CPython 3.13's
// track=False) keeps a segment out of the tracker: only an explicit Unlink
// removes it. Because the tracker is a re-execution of the program, a
// program that creates named segments must call process.Init first thing
// in main. If the tracker itself is killed, the next Create starts a new
// one; segments registered with the dead one may then leak. Attaching
// (Open, MultiprocAttach) never registers a segment, so, unlike CPython
// before 3.13 (gh-82300), a process that only attached never causes an
// unlink. Prefer anonymous segments whenever the processes are all
// multiproc processes: they need no cleanup at all.
//
// A Scope is CPython's SharedMemoryManager without its server process:
// the named segments created with InScope(sc) (Create, CreateValue,
// CreateArray, NewShareableList) are unlinked together by sc.Close, and,
// being tracked, by the tracker if the program dies before that.
//
// # Values and arrays
//
// Value[T] and Array[T] place a fixed-size, pointer-free T (numbers,
// bools, arrays and structs of them) in shared memory: in their own
// anonymous or named segment, or in a Block of an Arena. Types that hold
// pointers (strings, slices, maps, channels, functions, interfaces,
// pointers) are refused at construction with a *TypeError naming the
// offending field, since a pointer means nothing in another process.
//
// Values of 4- and 8-byte integer types (int32, int64, uint32, uint64,
// int, uint, uintptr and named types of them) are atomic: Load, Store,
// Swap, Add and CompareAndSwap use sync/atomic on the shared memory and
// are safe for concurrent use by any number of goroutines in any number
// of processes, without a lock (unlike CPython's Value, whose v.value += 1
// needs get_lock()). For other types Load and Store are plain copies and
// not atomic: guard them with a syncprim lock when processes write
// concurrently. Arrays are plain memory: At, Set and Slice are not
// synchronised.
//
// # ShareableList
//
// ShareableList uses CPython's exact layout, so a list created by Go is a
// multiprocessing.shared_memory.ShareableList for Python and the other way
// round, byte for byte (see the ShareableList type for the quirks this
// implies).
//
// # Arenas
//
// An Arena carves one anonymous segment into Blocks, so that a program
// with thousands of locks or small values needs one fd and one mapping.
// Allocation happens in the creating process; a child that receives
// Blocks maps the arena once, however many Blocks it receives.
//
// # Handing shared memory to child processes
//
// Segment, Value, Array, ShareableList and Block implement multiproc's
// handle contract: MultiprocHandle returns duplicates of the file
// descriptors the object needs (the caller owns and closes them) and a
// small descriptor, and MultiprocAttach on a zero value in the child maps
// the same memory from them. The process package does this for every
// argument of a child; the fd travels, not the name, so a named segment
// reaches the child even after it was unlinked, and an anonymous one never
// needs a name at all. Blocks of one arena share a single mapping and fd
// per process, whatever their number.
//
// # Concurrency
//
// The methods of Segment, Arena and Block are safe for concurrent use.
// The shared bytes themselves are not synchronised by this package: use
// the atomic methods of integer Values, a syncprim lock, or your own
// protocol. Memory must not be touched after the Close that unmaps it
// (it faults), so the Close of a Value, Array or ShareableList must not
// race with its other methods.
//
// # Platforms
//
// Linux only (any architecture). A build for another system stops with one
// message, "multiproc needs Linux", from package internal/base/linuxonly.
package shm
