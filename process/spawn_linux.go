// SPDX-License-Identifier: Apache-2.0

package process

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/multiproc/multiproc/process/starter"
)

// childFD0 is the fd at which a spawned child finds its bootstrap
// message; the inherited-file table follows from childFD0+1.
const childFD0 = 3

// Start execs /proc/self/exe with the bootstrap in a sealed memfd at fd 3
// and the inherited-file table from fd 4 on. The child learns this layout
// from the environment variable that also marks it as a child.
func (spawnStarter) Start(ctx context.Context, req *starter.Request) (starter.Child, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	boot, err := bootstrapFile(req.Bootstrap)
	if err != nil {
		return nil, err
	}
	defer boot.Close()
	stdin := req.Stdin
	if stdin == nil {
		if stdin, err = os.Open(os.DevNull); err != nil {
			return nil, fmt.Errorf("process: start %s: %w", req.Name, err)
		}
		defer stdin.Close()
	}
	fds := make([]uintptr, 0, 4+len(req.Files))
	for _, f := range []*os.File{stdin, req.Stdout, req.Stderr, boot} {
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
	for _, f := range []*os.File{stdin, req.Stdout, req.Stderr, boot} {
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
	c, err := starter.ChildFromPidfd(pid, pidfd)
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
