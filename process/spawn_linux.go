// SPDX-License-Identifier: Apache-2.0

package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// childFD0 is the fd at which a spawned child finds its bootstrap
// message; the inherited-file table follows from childFD0+1.
const childFD0 = 3

// Start execs /proc/self/exe with the bootstrap in a sealed memfd at fd 3
// and the inherited-file table from fd 4 on. The child learns this layout
// from the environment variable that also marks it as a child.
func (spawnStarter) Start(ctx context.Context, req *StartRequest) (Child, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	boot, err := bootstrapFile(req.Bootstrap)
	if err != nil {
		return nil, err
	}
	defer boot.Close()
	fds := make([]uintptr, 0, 4+len(req.Files))
	for _, f := range []*os.File{req.Stdin, req.Stdout, req.Stderr, boot} {
		fds = append(fds, f.Fd())
	}
	for _, f := range req.Files {
		// Not f.Fd(), which would make the file blocking, and with it the
		// parent's own copy when the file description is shared.
		fd, err := rawFD(f)
		if err != nil {
			return nil, err
		}
		fds = append(fds, fd)
	}
	env := append(req.Env[:len(req.Env):len(req.Env)], envChild+"="+strconv.Itoa(childFD0)+":"+strconv.Itoa(len(req.Files)))
	pidfd := -1
	sys := &syscall.SysProcAttr{PidFD: &pidfd}
	attr := &syscall.ProcAttr{Env: env, Files: fds, Sys: sys}
	argv := []string{os.Args[0]}
	var pid int
	if req.Daemon {
		// The kernel sends the death signal when the *thread* that forked
		// the child exits, not the process: a caller locked to a thread
		// (runtime.LockOSThread) that later ends would kill the child.
		// Fork from a fresh goroutine, which never runs on a locked thread.
		sys.Pdeathsig = syscall.SIGTERM
		done := make(chan struct{})
		go func() {
			defer close(done)
			pid, err = syscall.ForkExec("/proc/self/exe", argv, attr)
		}()
		<-done
	} else {
		pid, err = syscall.ForkExec("/proc/self/exe", argv, attr)
	}
	for _, f := range []*os.File{req.Stdin, req.Stdout, req.Stderr, boot} {
		// ProcAttr.Files took raw fds: keep the files alive until here.
		runtime.KeepAlive(f)
	}
	for _, f := range req.Files {
		runtime.KeepAlive(f)
	}
	if err != nil {
		return nil, fmt.Errorf("process: start %s: %w", req.Name, err)
	}
	if pidfd < 0 {
		// No pidfd (kernel < 5.3): refuse rather than race on pids.
		killAndReap(pid)
		return nil, fmt.Errorf("process: start %s: the kernel gave no pidfd (Linux 5.3 or later is needed)", req.Name)
	}
	c, err := newPidfdChild(pid, pidfd)
	if err != nil {
		killAndReap(pid)
		return nil, err
	}
	return c, nil
}

func killAndReap(pid int) {
	syscall.Kill(pid, syscall.SIGKILL)
	var ws syscall.WaitStatus
	for {
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != syscall.EINTR {
			return
		}
	}
}

// bootstrapFile returns a memfd holding b at offset 0, sealed against
// writes. A memfd needs no reader goroutine whatever b's size, and the
// kernel frees it with its last fd.
func bootstrapFile(b []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("multiproc-bootstrap", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	f := os.NewFile(uintptr(fd), "multiproc-bootstrap")
	for off := 0; off < len(b); {
		n, err := unix.Pwrite(fd, b[off:], int64(off))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			f.Close()
			return nil, os.NewSyscallError("pwrite", err)
		}
		off += n
	}
	unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL)
	return f, nil
}

// readBootstrap reads the whole memfd (or any file) at fd from offset 0
// and closes it.
func readBootstrap(fd int) ([]byte, error) {
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, os.NewSyscallError("fstat", err)
	}
	if st.Size > maxBootstrap {
		return nil, fmt.Errorf("bootstrap message of %d bytes is over the limit of %d", st.Size, maxBootstrap)
	}
	b := make([]byte, st.Size)
	for off := 0; off < len(b); {
		n, err := unix.Pread(fd, b[off:], int64(off))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, os.NewSyscallError("pread", err)
		}
		if n == 0 {
			return nil, fmt.Errorf("bootstrap message cut short at %d of %d bytes", off, len(b))
		}
		off += n
	}
	return b, nil
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
	return 0, fmt.Errorf("process: wait for pid %d: woken without exit", c.pid)
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

// rawFD returns f's descriptor without changing its blocking mode.
func rawFD(f *os.File) (uintptr, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fd uintptr
	if err := raw.Control(func(x uintptr) { fd = x }); err != nil {
		return 0, err
	}
	return fd, nil
}

// si_code values for SIGCHLD.
const cldExited = 1 // CLD_EXITED; CLD_KILLED and CLD_DUMPED mean a signal
