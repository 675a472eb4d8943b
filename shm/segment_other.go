// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package shm

var errExist error = ErrUnsupported

type fileKey struct{ dev, ino uint64 }

func sysMap(fd, size int) ([]byte, error)      { return nil, ErrUnsupported }
func sysUnmap(mem []byte) error                { return nil }
func sysClose(fd int) error                    { return nil }
func sysDup(fd int) (int, error)               { return -1, ErrUnsupported }
func sysFileSize(fd int) (int, error)          { return 0, ErrUnsupported }
func sysFileID(fd int) (fileKey, int, error)   { return fileKey{}, 0, ErrUnsupported }
func sysNewAnon(size int) (int, []byte, error) { return -1, nil, ErrUnsupported }
func sysCreate(name string, size int, init []byte) (int, []byte, error) {
	return -1, nil, ErrUnsupported
}
func sysOpen(name string) (int, []byte, int, error) { return -1, nil, 0, ErrUnsupported }
func sysUnlink(name string) error                   { return ErrUnsupported }
