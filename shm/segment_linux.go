// SPDX-License-Identifier: Apache-2.0

//go:build linux

package shm

import (
	"golang.org/x/sys/unix"
)

var errExist error = unix.EEXIST

const shmDir = "/dev/shm/"

func sysMap(fd, size int) ([]byte, error) {
	return unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

func sysUnmap(mem []byte) error {
	if mem == nil {
		return nil
	}
	return unix.Munmap(mem)
}

func sysClose(fd int) error { return unix.Close(fd) }

func sysDup(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

func sysFileSize(fd int) (int, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return int(st.Size), nil
}

// fileKey identifies the file behind an fd, so that several handles to
// the same memfd share one mapping.
type fileKey struct{ dev, ino uint64 }

func sysFileID(fd int) (fileKey, int, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fileKey{}, 0, err
	}
	return fileKey{uint64(st.Dev), uint64(st.Ino)}, int(st.Size), nil
}

func sysNewAnon(size int) (int, []byte, error) {
	fd, err := unix.MemfdCreate("multiproc-shm", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, nil, wrapSys("memfd_create", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, nil, wrapSys("ftruncate", err)
	}
	// Nobody (a child included) can shrink the memfd under a mapping, which
	// would turn accesses into SIGBUS.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return -1, nil, wrapSys("seal memfd", err)
	}
	mem, err := sysMap(fd, size)
	if err != nil {
		unix.Close(fd)
		return -1, nil, wrapSys("mmap", err)
	}
	return fd, mem, nil
}

func sysCreate(name string, size int, init []byte) (int, []byte, error) {
	path := shmDir + name
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return -1, nil, err
	}
	fail := func(err error) (int, []byte, error) {
		unix.Close(fd)
		unix.Unlink(path)
		return -1, nil, err
	}
	if init != nil {
		for off := 0; off < len(init); {
			n, err := unix.Pwrite(fd, init[off:], int64(off))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return fail(wrapSys("write", err))
			}
			off += n
		}
	}
	if len(init) != size {
		if err := unix.Ftruncate(fd, int64(size)); err != nil {
			return fail(wrapSys("ftruncate", err))
		}
	}
	mem, err := sysMap(fd, size)
	if err != nil {
		return fail(wrapSys("mmap", err))
	}
	return fd, mem, nil
}

func sysOpen(name string) (int, []byte, int, error) {
	fd, err := unix.Open(shmDir+name, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, 0, err
	}
	size, err := sysFileSize(fd)
	if err == nil && size <= 0 {
		err = ErrInvalidSize
	}
	if err != nil {
		unix.Close(fd)
		return -1, nil, 0, err
	}
	mem, err := sysMap(fd, size)
	if err != nil {
		unix.Close(fd)
		return -1, nil, 0, wrapSys("mmap", err)
	}
	return fd, mem, size, nil
}

func sysUnlink(name string) error { return unix.Unlink(shmDir + name) }

func wrapSys(op string, err error) error { return &sysError{op, err} }

type sysError struct {
	op  string
	err error
}

func (e *sysError) Error() string { return e.op + ": " + e.err.Error() }
func (e *sysError) Unwrap() error { return e.err }
