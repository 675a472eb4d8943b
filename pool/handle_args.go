// SPDX-License-Identifier: Apache-2.0

// Shared-memory handles in task arguments: a task's argument may be, or
// hold in struct fields, handles of package shm (a *shm.Segment,
// *shm.Array, *shm.Value, *shm.Block of an arena, *shm.ShareableList), so
// that data kept in shared memory is passed by reference, not copied.
//
// In the parent, the descriptor of each distinct handle of a call (a job)
// is duplicated once and kept open until the call ends (argKeep); a
// chunk's encoding carries, per handle, the parent's pid and the
// descriptor's number, device and inode. A worker reopens the memory
// through /proc/PID/fd/N (the same file, whatever the connection to the
// worker is: a pipe cannot carry descriptors), checks that it is the same
// file (device and inode: a number reused after the call ended is
// refused), attaches the handle (an mmap) for the chunk's tasks, and
// closes it once they have returned. Other handles (locks, queues,
// connections, manager proxies) hold more than memory (sockets, pipes, a
// server's state) and still reach workers through the Initializer only.

package pool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// shmPkg is the package whose handles travel in task arguments.
const shmPkg = "github.com/multiproc/multiproc/shm"

// shmOnly reports whether every handle of s is one of package shm's.
func (s *handleShape) shmOnly() bool {
	if s.handle {
		return s.t.Elem().PkgPath() == shmPkg
	}
	for _, f := range s.fields {
		if f != nil && !f.shmOnly() {
			return false
		}
	}
	return true
}

// argKeep holds, in the parent, the duplicated descriptors of the handles
// a job's arguments refer to, one per distinct handle, until the job
// ends.
type argKeep struct {
	mu     sync.Mutex
	closed bool
	byH    map[handler]*keptHandle
}

// keptHandle is one handle as a worker finds it: its type, descriptor and
// files (by number in the parent, with their identity).
type keptHandle struct {
	kind  string
	desc  []byte
	files []keptFile
	fs    []*os.File // the parent's duplicates, open until the job ends
}

type keptFile struct {
	fd       int
	dev, ino uint64
}

var errJobEnded = errors.New("pool: the call ended")

// get returns h as kept for the job, duplicating its descriptors the
// first time.
func (k *argKeep) get(h handler) (*keptHandle, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, errJobEnded
	}
	if kh := k.byH[h]; kh != nil {
		return kh, nil
	}
	fs, desc, err := h.MultiprocHandle()
	if err != nil {
		return nil, fmt.Errorf("pool: task argument: %T: %w", h, err)
	}
	if len(fs) > maxHandleFiles {
		closeFiles(fs)
		return nil, fmt.Errorf("pool: task argument: %T has %d files", h, len(fs))
	}
	kh := &keptHandle{kind: reflect.TypeOf(h).String(), desc: desc, fs: fs}
	for _, f := range fs {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			closeFiles(fs)
			return nil, fmt.Errorf("pool: task argument: %T: %w", h, os.NewSyscallError("fstat", err))
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			closeFiles(fs)
			return nil, fmt.Errorf("pool: task argument: %T is not shared memory: %w", h, ErrHandleArg)
		}
		kh.files = append(kh.files, keptFile{fd: int(f.Fd()), dev: st.Dev, ino: st.Ino})
	}
	if k.byH == nil {
		k.byH = map[handler]*keptHandle{}
	}
	k.byH[h] = kh
	return kh, nil
}

// close closes the job's descriptors: workers can no longer reopen them.
func (k *argKeep) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	for _, kh := range k.byH {
		closeFiles(kh.fs)
	}
	k.byH = nil
}

// appendArgHandles appends the encoding of vals (values of shape s's
// type): the parent's pid, then per value its plain fields (gob) and its
// handles as kept by keep.
func appendArgHandles(dst []byte, s *handleShape, vals reflect.Value, keep *argKeep) ([]byte, error) {
	dst = binary.AppendUvarint(dst, uint64(selfPid))
	for i := range vals.Len() {
		hs, plain, err := s.split(vals.Index(i))
		if err != nil {
			return dst, err
		}
		dst = binary.AppendUvarint(dst, uint64(len(plain)))
		dst = append(dst, plain...)
		dst = binary.AppendUvarint(dst, uint64(len(hs)))
		for _, h := range hs {
			if h == nil {
				dst = binary.AppendUvarint(dst, 0) // no kind: a nil handle
				continue
			}
			kh, err := keep.get(h)
			if err != nil {
				return dst, err
			}
			dst = binary.AppendUvarint(dst, uint64(len(kh.kind)))
			dst = append(dst, kh.kind...)
			dst = binary.AppendUvarint(dst, uint64(len(kh.files)))
			for _, f := range kh.files {
				dst = binary.AppendUvarint(dst, uint64(f.fd))
				dst = binary.AppendUvarint(dst, f.dev)
				dst = binary.AppendUvarint(dst, f.ino)
			}
			dst = binary.AppendUvarint(dst, uint64(len(kh.desc)))
			dst = append(dst, kh.desc...)
		}
	}
	return dst, nil
}

// argValue is one decoded argument: its plain fields' encoding and its
// handles, to open.
type argValue struct {
	plain   []byte
	handles []argHandle
}

type argHandle struct {
	kind  string // "" for a nil handle
	files []keptFile
	desc  []byte
}

var errBadArgHandles = errors.New("pool: malformed handles in task arguments")

// parseArgHandles decodes n arguments encoded by appendArgHandles (it
// opens nothing). Every count is bounded.
func parseArgHandles(b []byte, n int) (pid int, vals []argValue, err error) {
	uv := func() (uint64, bool) {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	bytesOf := func() ([]byte, bool) {
		l, ok := uv()
		if !ok || l > uint64(len(b)) {
			return nil, false
		}
		v := b[:l:l]
		b = b[l:]
		return v, true
	}
	p, ok := uv()
	if !ok || p == 0 || p > 1<<22 || n < 0 || n > len(b) {
		return 0, nil, errBadArgHandles
	}
	vals = make([]argValue, n)
	for i := range vals {
		plain, ok := bytesOf()
		nh, ok2 := uv()
		if !ok || !ok2 || nh > maxInitHandles {
			return 0, nil, errBadArgHandles
		}
		vals[i].plain = plain
		for range nh {
			kind, ok := bytesOf()
			if !ok {
				return 0, nil, errBadArgHandles
			}
			if len(kind) == 0 {
				vals[i].handles = append(vals[i].handles, argHandle{})
				continue
			}
			nf, ok := uv()
			if !ok || nf > maxHandleFiles {
				return 0, nil, errBadArgHandles
			}
			h := argHandle{kind: string(kind)}
			for range nf {
				fd, ok1 := uv()
				dev, ok2 := uv()
				ino, ok3 := uv()
				if !ok1 || !ok2 || !ok3 || fd > 1<<30 {
					return 0, nil, errBadArgHandles
				}
				h.files = append(h.files, keptFile{fd: int(fd), dev: dev, ino: ino})
			}
			if h.desc, ok = bytesOf(); !ok {
				return 0, nil, errBadArgHandles
			}
			vals[i].handles = append(vals[i].handles, h)
		}
	}
	if len(b) != 0 {
		return 0, nil, errBadArgHandles
	}
	return int(p), vals, nil
}

// openArgFile reopens the parent's descriptor f.fd through /proc and
// checks that it is the file the parent described.
func openArgFile(pid int, f keptFile) (*os.File, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(f.fd)
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("pool: reopening a shared-memory handle of the task's argument: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(file.Fd()), &st); err != nil || st.Dev != f.dev || st.Ino != f.ino {
		file.Close()
		return nil, fmt.Errorf("pool: a shared-memory handle of the task's argument is gone (its call ended): %w", io.ErrUnexpectedEOF)
	}
	return file, nil
}

// decodeArgs rebuilds n arguments of shape s from data, attaching their
// handles; closeAll closes what was attached (it is never nil).
func decodeArgs[A any](s *handleShape, data []byte, n int) (ins []A, closeAll func(), err error) {
	var attached []reflect.Value
	closeAll = func() {
		for _, v := range attached {
			if c, ok := v.Interface().(io.Closer); ok {
				c.Close()
			}
		}
	}
	pid, vals, err := parseArgHandles(data, n)
	if err != nil {
		return nil, closeAll, err
	}
	ins = make([]A, n)
	for i, av := range vals {
		got := make([]gotHandle, len(av.handles))
		for k, h := range av.handles {
			got[k].kind, got[k].desc = h.kind, h.desc
			for _, f := range h.files {
				file, oerr := openArgFile(pid, f)
				if oerr != nil {
					err = oerr
					break
				}
				got[k].files = append(got[k].files, file)
			}
			if err != nil {
				for _, g := range got {
					closeFiles(g.files)
				}
				return nil, closeAll, err
			}
		}
		v, jerr := s.joinWith(av.plain, got, func(h reflect.Value) { attached = append(attached, h) })
		if jerr != nil {
			return nil, closeAll, jerr
		}
		ins[i] = v.Interface().(A)
	}
	return ins, closeAll, nil
}
