// SPDX-License-Identifier: Apache-2.0

package starter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ChildFromPidfd returns a Child for a process this process started itself
// (by fork/exec, with its pid and a pidfd from clone's CLONE_PIDFD or
// pidfd_open), watched exactly as Spawn watches its children: Wait reaps
// it through the pidfd, Signal uses pidfd_send_signal, WaitFD is the
// pidfd. It takes ownership of pidfd (Release closes it); on error pidfd
// is closed. It lets a Starter in another module (the forkserver's) hand
// out children it started ahead of time.
func ChildFromPidfd(pid, pidfd int) (Child, error) {
	if pid <= 0 || pidfd < 0 {
		return nil, fmt.Errorf("starter: ChildFromPidfd(%d, %d): bad pid or pidfd", pid, pidfd)
	}
	c, err := newPidfdChild(pid, pidfd)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// pidfdChild is a child watched through a pidfd: waiting and signalling
// address exactly this process, never a later one that reused its pid.
type pidfdChild struct {
	pid  int
	file *os.File // the pidfd, non-blocking, in the runtime poller
	raw  syscall.RawConn

	mu     sync.Mutex  // serialises Wait
	exited atomic.Bool // set after code
	code   int
}

func newPidfdChild(pid, pidfd int) (*pidfdChild, error) {
	if err := unix.SetNonblock(pidfd, true); err != nil {
		unix.Close(pidfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &pidfdChild{pid: pid, file: f, raw: raw}, nil
}

func (c *pidfdChild) Pid() int { return c.pid }

// siginfo offsets of si_pid and si_status for SIGCHLD: after signo,
// errno, code (and padding to 8 bytes on 64-bit systems).
var siPidOff = func() uintptr {
	if unsafe.Sizeof(uintptr(0)) == 8 {
		return 16
	}
	return 12
}()

// reap tries waitid(P_PIDFD, WEXITED|WNOHANG) once.
func (c *pidfdChild) reap(fd uintptr) (done bool, err error) {
	var info unix.Siginfo
	for {
		err = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG, nil)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return false, os.NewSyscallError("waitid", err)
	}
	p := unsafe.Pointer(&info)
	pid := *(*int32)(unsafe.Add(p, siPidOff))
	if pid == 0 {
		return false, nil
	}
	status := int(*(*int32)(unsafe.Add(p, siPidOff+8)))
	switch info.Code {
	case cldExited:
		c.code = status
	default: // CLD_KILLED, CLD_DUMPED
		c.code = -status
	}
	c.exited.Store(true)
	return true, nil
}

var pastDeadline = time.Unix(1, 0)

func (c *pidfdChild) Wait(ctx context.Context) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exited.Load() {
		return c.code, nil
	}
	poll := ctx.Err() != nil
	var stop func() bool
	var fired chan struct{}
	if !poll && ctx.Done() != nil {
		fired = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			c.file.SetReadDeadline(pastDeadline)
			close(fired)
		})
	}
	var werr error
	rerr := c.raw.Read(func(fd uintptr) bool {
		var done bool
		done, werr = c.reap(fd)
		return done || werr != nil || poll || ctx.Err() != nil
	})
	if stop != nil && !stop() {
		<-fired
		c.file.SetReadDeadline(time.Time{})
	}
	if c.exited.Load() {
		return c.code, nil
	}
	if werr != nil {
		return 0, werr
	}
	if poll || ctx.Err() != nil || (rerr != nil && errors.Is(rerr, os.ErrDeadlineExceeded)) {
		return 0, ctx.Err()
	}
	if rerr != nil {
		return 0, rerr
	}
	return 0, fmt.Errorf("starter: wait for pid %d: woken without exit", c.pid)
}

func (c *pidfdChild) Signal(sig syscall.Signal) error {
	var serr error
	if err := c.raw.Control(func(fd uintptr) {
		serr = unix.PidfdSendSignal(int(fd), sig, nil, 0)
	}); err != nil {
		return err
	}
	if serr == unix.ESRCH {
		return nil
	}
	if serr != nil {
		return os.NewSyscallError("pidfd_send_signal", serr)
	}
	return nil
}

func (c *pidfdChild) WaitFD() (uintptr, bool, error) {
	exited := c.exited.Load()
	var fd uintptr
	if err := c.raw.Control(func(f uintptr) { fd = f }); err != nil {
		return 0, false, err
	}
	return fd, exited, nil
}

func (c *pidfdChild) Release() error { return c.file.Close() }

const cldExited = 1 // CLD_EXITED; CLD_KILLED and CLD_DUMPED mean a signal
