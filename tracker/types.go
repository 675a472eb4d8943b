// SPDX-License-Identifier: Apache-2.0

package tracker

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Resource types known to every multiproc program.
const (
	// SharedMemory is a POSIX shared memory segment, /dev/shm/<name>
	// (CPython's "shared_memory"); its cleanup is shm_unlink.
	SharedMemory = "shared_memory"
	// Semaphore is a named POSIX semaphore, /dev/shm/sem.<name>
	// (CPython's "semaphore"), accepted for trees that mix in CPython
	// processes; its cleanup is sem_unlink.
	Semaphore = "semaphore"
)

var types struct {
	sync.RWMutex
	m map[string]func(name string) error
}

func init() {
	RegisterType(SharedMemory, func(name string) error {
		return unlinkDevShm(strings.TrimPrefix(name, "/"))
	})
	RegisterType(Semaphore, func(name string) error {
		return unlinkDevShm("sem." + strings.TrimPrefix(name, "/"))
	})
}

// unlinkDevShm removes /dev/shm/<name>, as shm_unlink(3) does.
func unlinkDevShm(name string) error {
	if name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("tracker: bad name %q", name)
	}
	if err := unix.Unlink("/dev/shm/" + name); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fs.ErrNotExist
		}
		return err
	}
	return nil
}

// RegisterType adds a resource type and the function that cleans up a
// leaked resource of that type (it runs in the tracker process, with the
// name as registered). It returns an error matching fs.ErrNotExist when
// the resource is already gone, which the tracker does not report as a
// leak. Call it at package initialisation, so that the tracker, which
// runs the same binary, knows the type too. It panics on a name that is
// not 1 to MaxTypeLen bytes of [a-z0-9_], on a nil function, or on a
// type registered twice.
func RegisterType(rtype string, cleanup func(name string) error) {
	if !validType(rtype) || cleanup == nil {
		panic(fmt.Sprintf("tracker: RegisterType(%q): bad type name or nil cleanup", rtype))
	}
	types.Lock()
	defer types.Unlock()
	if _, dup := types.m[rtype]; dup {
		panic(fmt.Sprintf("tracker: RegisterType(%q): registered twice", rtype))
	}
	if types.m == nil {
		types.m = map[string]func(string) error{}
	}
	types.m[rtype] = cleanup
}

func cleanupFunc(rtype string) (func(string) error, bool) {
	types.RLock()
	defer types.RUnlock()
	f, ok := types.m[rtype]
	return f, ok
}
