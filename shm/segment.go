// SPDX-License-Identifier: Apache-2.0

package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
)

// Segment is a block of shared memory mapped into this process: either
// anonymous (a memfd, New) or named (a file in /dev/shm, Create and Open).
//
// The memory returned by Bytes is shared with every process that maps the
// same segment; the Segment provides no synchronisation of its contents.
// Bytes, Size, Name, Close, Unlink and MultiprocHandle are safe to call
// concurrently. The memory must not be used after Close: it is unmapped,
// and touching it faults.
type Segment struct {
	mu   sync.Mutex
	mem  []byte
	fd   int // -1 once closed
	size int
	name string // without the leading "/"; "" for anonymous

	scope *Scope // the Scope it was created through (InScope), if any
}

// maxNameLen is NAME_MAX: the longest file name in /dev/shm.
const maxNameLen = 255

// normName validates a user-supplied name and returns it without its
// leading "/", the form CPython reports.
func normName(name string) (string, error) {
	n := strings.TrimPrefix(name, "/")
	switch {
	case n == "", n == ".", n == "..":
		return "", fmt.Errorf("%w: %q", ErrInvalidName, name)
	case strings.ContainsAny(n, "/\x00"):
		return "", fmt.Errorf("%w: %q contains '/' or NUL", ErrInvalidName, name)
	case len(n) > maxNameLen:
		return "", fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidName, len(n), maxNameLen)
	}
	return n, nil
}

// autoName returns a name as CPython's SharedMemory makes them: "psm_" and
// 8 lowercase hex digits.
var autoName = func() string {
	const hex = "0123456789abcdef"
	var b [12]byte
	copy(b[:], "psm_")
	r := rand.Uint32()
	for i := 11; i >= 4; i-- {
		b[i] = hex[r&15]
		r >>= 4
	}
	return string(b[:])
}

// New creates an anonymous segment of size bytes: a sealed memfd, mapped
// shared, zero-filled. It has no name and cannot leak: the kernel frees it
// when the last mapping and the last fd (in any process) are gone. Hand it
// to a child with MultiprocHandle.
func New(size int) (*Segment, error) {
	if size <= 0 {
		return nil, fmt.Errorf("%w: %d (must be > 0)", ErrInvalidSize, size)
	}
	fd, mem, err := sysNewAnon(size)
	if err != nil {
		return nil, err
	}
	return &Segment{mem: mem, fd: fd, size: size}, nil
}

// Create creates the named segment /dev/shm/<name> of size bytes with
// CPython's flags (O_CREAT|O_EXCL|O_RDWR, mode 0600) and maps it shared.
// A leading "/" is accepted and dropped. An empty name picks a fresh
// "psm_xxxxxxxx" name, retrying on collisions. A Python process attaches
// with SharedMemory(name=seg.Name()).
//
// Errors: ErrInvalidSize for size <= 0, ErrInvalidName, and an error
// matching fs.ErrExist when the name is taken (CPython's FileExistsError).
//
// The segment outlives this process until Unlink. Unless created with
// Untracked, it is registered with the process tree's resource tracker
// (package tracker), which unlinks it, with a warning naming it, if every
// process of the tree ends without unlinking it, SIGKILL included. The
// first such Create of a tree starts the tracker (one process start, and
// main must call process.Init first); later ones add one write(2).
func Create(name string, size int, opts ...Option) (*Segment, error) {
	return create(name, size, nil, opts)
}

// create is Create; a non-nil init (of size bytes) is written into the new
// file before it is mapped, which allocates its pages in one system call
// instead of one page fault each.
func create(name string, size int, init []byte, opts []Option) (*Segment, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if size <= 0 {
		return nil, fmt.Errorf("%w: %d (must be > 0)", ErrInvalidSize, size)
	}
	if o.scope != nil {
		if o.untracked {
			return nil, errScopeUntracked
		}
		if err := o.scope.check(); err != nil {
			return nil, fmt.Errorf("shm: create in a closed scope: %w", err)
		}
	}
	auto := name == ""
	if !auto {
		n, err := normName(name)
		if err != nil {
			return nil, err
		}
		name = n
	}
	for try := 1; ; try++ {
		n := name
		if auto {
			n = autoName()
		}
		fd, mem, err := sysCreate(n, size, init)
		if auto && errors.Is(err, errExist) && try < 100 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("shm: create %q: %w", n, err)
		}
		s := &Segment{mem: mem, fd: fd, size: size, name: n}
		if t := tracking; t != nil && !o.untracked {
			if err := t.Register(n); err != nil {
				s.Close()
				sysUnlink(n)
				return nil, fmt.Errorf("shm: register %q with the resource tracker: %w", n, err)
			}
		}
		if o.scope != nil {
			if err := o.scope.add(s); err != nil { // closed meanwhile
				s.Close()
				s.Unlink()
				return nil, fmt.Errorf("shm: create in a closed scope: %w", err)
			}
		}
		return s, nil
	}
}

// Open attaches to the existing named segment /dev/shm/<name> (a leading
// "/" is accepted). Its size is the file's size (CPython ignores the size
// argument on attach; there is none here). A missing segment gives an
// error matching fs.ErrNotExist (CPython's FileNotFoundError).
//
// Attaching never registers the segment with the resource tracker: only
// its creator owns it (unlike CPython before 3.13, gh-82300).
func Open(name string) (*Segment, error) {
	n, err := normName(name)
	if err != nil {
		return nil, err
	}
	fd, mem, size, err := sysOpen(n)
	if err != nil {
		return nil, fmt.Errorf("shm: open %q: %w", n, err)
	}
	return &Segment{mem: mem, fd: fd, size: size, name: n}, nil
}

// Bytes returns the mapped memory, or nil once the segment is closed. The
// slice must not be used after Close.
func (s *Segment) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mem
}

// Size returns the size of the segment in bytes (also after Close).
func (s *Segment) Size() int { return s.size }

// Name returns the segment's name without a leading "/", as CPython
// reports it, or "" for an anonymous segment.
func (s *Segment) Name() string { return s.name }

// Close unmaps the segment and closes its fd. A named segment lives on in
// /dev/shm until Unlink; an anonymous one is freed when no process maps or
// holds it any more. Close is idempotent.
func (s *Segment) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return nil
	}
	err := sysUnmap(s.mem)
	if cerr := sysClose(s.fd); err == nil {
		err = cerr
	}
	s.mem, s.fd = nil, -1
	if err != nil {
		return fmt.Errorf("shm: close: %w", err)
	}
	return nil
}

// Unlink removes the named segment from /dev/shm; processes that have it
// mapped keep their mapping. It works before or after Close. A second
// Unlink gives an error matching fs.ErrNotExist (CPython's
// FileNotFoundError); an anonymous segment gives ErrAnonymous.
func (s *Segment) Unlink() error {
	if s.name == "" {
		return ErrAnonymous
	}
	if err := sysUnlink(s.name); err != nil {
		return fmt.Errorf("shm: unlink %q: %w", s.name, err)
	}
	if s.scope != nil {
		s.scope.forget(s)
	}
	// Unregister whoever unlinks (the creator or a process that attached):
	// the name is gone either way. Without a tracker this does nothing.
	if t := tracking; t != nil {
		if err := t.Unregister(s.name); err != nil {
			return fmt.Errorf("shm: unregister %q from the resource tracker: %w", s.name, err)
		}
	}
	return nil
}

// Segment handle descriptor: version 1, then the name (empty for an
// anonymous segment). The one file is the segment's fd.
const segHandleV1 = 1

// MultiprocHandle describes the segment so that another process can map
// it with MultiprocAttach: a duplicate of its fd (the caller owns and
// closes it) and a descriptor carrying the name, if any. A named segment
// travels by fd too, so the child maps the same memory even if the name
// has been unlinked meanwhile. The process package calls it when a
// *Segment is an argument of a child.
func (s *Segment) MultiprocHandle() (files []*os.File, desc []byte, err error) {
	f, err := s.dupFile()
	if err != nil {
		return nil, nil, err
	}
	return []*os.File{f}, append([]byte{segHandleV1}, s.name...), nil
}

func (s *Segment) dupFile() (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return nil, ErrClosed
	}
	nfd, err := sysDup(s.fd)
	if err != nil {
		return nil, fmt.Errorf("shm: dup: %w", err)
	}
	return os.NewFile(uintptr(nfd), "shm-handle"), nil
}

// MultiprocAttach makes the zero Segment s the segment that
// MultiprocHandle described in another process, mapping it from the
// passed fd (its size comes from fstat). It takes ownership of files. An
// attached named segment is not registered with the tracker: Unlink it
// only if this process is meant to own it.
func (s *Segment) MultiprocAttach(files []*os.File, desc []byte) error {
	if len(files) != 1 || len(desc) < 1 || desc[0] != segHandleV1 {
		closeFiles(files)
		return fmt.Errorf("%w: segment handle with %d files and %d descriptor bytes", ErrBadHandle, len(files), len(desc))
	}
	name := string(desc[1:])
	if name != "" {
		if n, err := normName(name); err != nil || n != name {
			closeFiles(files)
			return fmt.Errorf("%w: segment name %q", ErrBadHandle, name)
		}
	}
	ns, err := segmentFromFile(files[0], name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mem != nil || s.size != 0 {
		ns.Close()
		return fmt.Errorf("%w: MultiprocAttach on a segment in use", ErrBadHandle)
	}
	s.mem, s.fd, s.size, s.name = ns.mem, ns.fd, ns.size, ns.name
	return nil
}

// segmentFromFile maps f (taking ownership of it) as a segment.
func segmentFromFile(f *os.File, name string) (*Segment, error) {
	fd, err := sysDup(int(f.Fd()))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("shm: dup: %w", err)
	}
	size, err := sysFileSize(fd)
	if err == nil && size <= 0 {
		err = fmt.Errorf("%w: the segment is empty", ErrInvalidSize)
	}
	if err != nil {
		sysClose(fd)
		return nil, fmt.Errorf("shm: attach: %w", err)
	}
	mem, err := sysMap(fd, size)
	if err != nil {
		sysClose(fd)
		return nil, fmt.Errorf("shm: attach: %w", err)
	}
	return &Segment{mem: mem, fd: fd, size: size, name: name}, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// Helpers for handle descriptors.
func appendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

func readU64(b []byte) (uint64, []byte, bool) {
	if len(b) < 8 {
		return 0, b, false
	}
	return binary.LittleEndian.Uint64(b), b[8:], true
}
