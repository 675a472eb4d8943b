// SPDX-License-Identifier: Apache-2.0

package starter

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// NewStatusSocketpair makes a socketpair as StatusSockets returns one
// (the process package's own, when its Starter has none ready).
func NewStatusSocketpair() ([2]int, error) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return sp, os.NewSyscallError("socketpair", err)
	}
	if err := unix.SetNonblock(sp[0], true); err != nil {
		unix.Close(sp[0])
		unix.Close(sp[1])
		return sp, os.NewSyscallError("fcntl", err)
	}
	return sp, nil
}

// CloseStrayFDs closes the fds this process inherited without being given
// them: fds the parent had opened without close-on-exec (or inherited
// itself), which syscall.ForkExec passes on, unlike Python's spawn
// (close_fds). They are told apart from the Go runtime's own fds, opened
// since exec, by their close-on-exec flag, which the runtime always sets.
// fds 0 to last are the child's stdio, bootstrap and inherited table.
//
// Init does this in every spawned child; a Starter whose warm processes
// wait in Init (see RegisterInitHook) must do the same before running
// anything.
func CloseStrayFDs(last int) {
	d, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	var buf [4096]byte
	var strays []int
	for {
		n, err := unix.ReadDirent(d, buf[:])
		if err != nil || n <= 0 {
			break
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			fd, err := strconv.Atoi(name)
			if err != nil || fd <= last || fd == d {
				continue
			}
			if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
				strays = append(strays, fd)
			}
		}
	}
	unix.Close(d)
	for _, fd := range strays {
		unix.Close(fd)
	}
}
