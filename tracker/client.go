// SPDX-License-Identifier: Apache-2.0

package tracker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/process/starter"
)

const (
	// inheritKey names the tracker's connection among the handles a child
	// inherits (starter.RegisterInherited).
	inheritKey = "multiproc.tracker"
	// envTracker turns a re-executed binary into the tracker (an init hook
	// of the process package); fd 3 is the pipe, fd 4 the ready pipe.
	envTracker = "MULTIPROC_TRACKER"
	// startTimeout bounds the wait for a new tracker to be ready when the
	// caller's context has no earlier deadline.
	startTimeout = 30 * time.Second
)

// conn is this process's connection to its tree's tracker: the write end
// of the tracker's pipe.
type conn struct {
	w       *os.File
	fd      int
	pid     int  // the tracker's pid
	started bool // started by this process (a child to reap once dead)
}

var client struct {
	sync.Mutex
	loaded bool // the inherited connection, if any, has been looked up
	c      *conn
	log    *zap.Logger
}

// selfPid is this process's pid, sent with each message: a system call
// saved per message (a Go process never forks without exec'ing, so it
// cannot change).
var selfPid = os.Getpid()

func init() {
	starter.RegisterInherited(inheritKey, inheritConn)
	starter.RegisterInitHook(envTracker, runTracker)
}

// SetLogger sets the logger of this process's tracker client (nil means
// process.Current().Logger): it receives the warning that the tracker died
// and was restarted. The tracker process itself logs to its standard error.
func SetLogger(l *zap.Logger) {
	client.Lock()
	defer client.Unlock()
	client.log = l
}

func logger() *zap.Logger {
	if client.log != nil {
		return client.log
	}
	if l := process.Current().Logger; l != nil {
		return l
	}
	return zap.NewNop()
}

// inheritConn gives a new child a duplicate of the connection, if this
// process has one.
func inheritConn() ([]*os.File, []byte, error) {
	client.Lock()
	defer client.Unlock()
	c := loadInherited()
	if c == nil {
		return nil, nil, nil
	}
	fd, err := unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("tracker: dup the tracker's pipe: %w", err)
	}
	return []*os.File{os.NewFile(uintptr(fd), "tracker-pipe")}, binary.BigEndian.AppendUint32(nil, uint32(c.pid)), nil
}

// loadInherited returns the current connection, taking the one inherited
// from the parent on first use. client is locked.
func loadInherited() *conn {
	if !client.loaded {
		client.loaded = true
		files, desc, ok := starter.Inherited(inheritKey)
		if ok && len(files) == 1 && len(desc) == 4 {
			f := files[0]
			client.c = &conn{w: f, fd: int(f.Fd()), pid: int(binary.BigEndian.Uint32(desc))}
		} else {
			for _, f := range files {
				f.Close()
			}
		}
	}
	return client.c
}

// Pid returns the pid of this process tree's tracker as this process
// knows it (started or inherited), or 0 when it has none. The tracker may
// have died since.
func Pid() int {
	client.Lock()
	defer client.Unlock()
	if c := loadInherited(); c != nil {
		return c.pid
	}
	return 0
}

// EnsureRunning makes sure this process has a tracker (CPython's
// ensure_running): it uses the inherited or already started one, or
// starts one, and starts a new one if it died. Register does this by
// itself; EnsureRunning lets a program pay the start (one process start,
// a few milliseconds) at a moment of its choosing, e.g. before leak
// checks in a test. It may be called any number of times.
func EnsureRunning(ctx context.Context) error {
	client.Lock()
	defer client.Unlock()
	_, err := send(ctx, message{op: opProbe, rtype: "noop"}, true)
	return err
}

// Register records that this process tree created the named resource of
// type rtype: if every process of the tree ends without Unregister, the
// tracker cleans it up and logs a warning naming it. Only the creator of
// a resource should register it. The first Register of a tree starts the
// tracker (ctx bounds that start); after that it is one write(2) to a
// pipe. If the tracker died, Register starts a new one and logs a warning
// that the resources registered with the dead one may leak.
func Register(ctx context.Context, rtype, name string) error {
	if err := checkArgs(rtype, name); err != nil {
		return err
	}
	client.Lock()
	defer client.Unlock()
	_, err := send(ctx, message{op: opRegister, rtype: rtype, name: name, pid: selfPid}, true)
	return err
}

// Unregister forgets a resource registered by Register, once it has been
// cleaned up normally (e.g. after shm's Unlink). Any process of the tree
// may unregister a resource. It never starts a tracker: without one it
// does nothing. Unregistering a name that is not registered is harmless.
func Unregister(ctx context.Context, rtype, name string) error {
	if err := checkArgs(rtype, name); err != nil {
		return err
	}
	client.Lock()
	defer client.Unlock()
	_, err := send(ctx, message{op: opUnregister, rtype: rtype, name: name, pid: selfPid}, false)
	return err
}

func checkArgs(rtype, name string) error {
	if _, ok := cleanupFunc(rtype); !ok {
		return fmt.Errorf("%w: %q", ErrUnknownType, rtype)
	}
	if !validName(name) {
		return fmt.Errorf("%w: %q", ErrBadName, name)
	}
	return nil
}

// send writes m to the tracker, starting one if start is set and there is
// none or it died. client is locked. It reports whether m was written.
func send(ctx context.Context, m message, start bool) (bool, error) {
	var buf [pipeBuf]byte
	msg := encode(buf[:0], m)
	c := loadInherited()
	for restarts := 0; ; restarts++ {
		if c == nil {
			if !start {
				return false, nil
			}
			var err error
			if c, err = startTracker(ctx); err != nil {
				return false, err
			}
			client.c = c
		}
		err := writeAll(c.fd, msg)
		if err == nil {
			return true, nil
		}
		pid := c.pid
		dead := errors.Is(err, unix.EPIPE)
		dropConn(c, dead)
		c = nil
		if !dead {
			return false, fmt.Errorf("tracker: write to the tracker (pid %d): %w", pid, err)
		}
		logger().Warn("tracker: the resource tracker died unexpectedly; resources registered with it might leak",
			zap.Int("tracker_pid", pid), zap.Bool("restarting", start))
		if restarts > 0 {
			return false, fmt.Errorf("%w: the new tracker died at once", ErrStart)
		}
	}
}

// writeAll writes msg (at most PIPE_BUF bytes: one atomic write) to fd.
func writeAll(fd int, msg []byte) error {
	for {
		n, err := unix.Write(fd, msg)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			// A non-blocking write end and a full pipe: wait for room.
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			unix.Poll(pfd, -1)
			continue
		}
		if err != nil {
			return err
		}
		if n != len(msg) {
			return io.ErrShortWrite
		}
		return nil
	}
}

// dropConn closes a connection that failed, and reaps the tracker if it
// is dead and this process started it. client is locked.
func dropConn(c *conn, dead bool) {
	c.w.Close()
	if c.started && dead {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(c.pid, &ws, 0, nil)
			if err != unix.EINTR {
				break
			}
		}
	}
	if client.c == c {
		client.c = nil
	}
}

// startTracker starts a tracker process for this process and its future
// children. client is locked.
func startTracker(ctx context.Context) (*conn, error) {
	if _, ok := os.LookupEnv(envTracker); ok {
		// Started as a tracker, but main runs: it did not call
		// process.Init first. Starting another would run main again in
		// every generation.
		return nil, fmt.Errorf("%w: this program was started as the resource tracker but main did not call process.Init() first", ErrStart)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("%w: pipe: %w", ErrStart, err)
	}
	r, w := os.NewFile(uintptr(p[0]), "tracker-pipe-r"), os.NewFile(uintptr(p[1]), "tracker-pipe")
	defer r.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("%w: pipe: %w", ErrStart, err)
	}
	defer readyR.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		w.Close()
		readyW.Close()
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	defer null.Close()
	proc, err := os.StartProcess("/proc/self/exe", []string{os.Args[0]}, &os.ProcAttr{
		Env:   trackerEnv(),
		Files: []*os.File{null, null, trackerStderr(null), r, readyW},
		// Its own session: a terminal's Ctrl-C or hang-up does not reach
		// it, and it has no parent-death signal.
		Sys: &syscall.SysProcAttr{Setsid: true},
	})
	readyW.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	pid := proc.Pid
	proc.Release() // reaped with wait4 by dropConn if it dies first
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	stop := context.AfterFunc(ctx, func() { readyR.SetReadDeadline(time.Unix(1, 0)) })
	var ok [2]byte
	_, err = io.ReadFull(readyR, ok[:])
	stop()
	if err != nil || string(ok[:]) != "ok" {
		unix.Kill(pid, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, 0, nil)
		w.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("%w: no sign of life from pid %d (does main call process.Init first?): %w", ErrStart, pid, err)
	}
	return &conn{w: w, fd: int(w.Fd()), pid: pid, started: true}, nil
}

// trackerEnv is this process's environment for the tracker, without the
// variables that would make it start as something else.
func trackerEnv() []string {
	env := os.Environ()
	out := env[:0:0]
	for _, kv := range env {
		if strings.HasPrefix(kv, "MULTIPROC_CHILD=") || strings.HasPrefix(kv, envTracker+"=") {
			continue
		}
		out = append(out, kv)
	}
	// One P is plenty for reading a pipe.
	return append(out, envTracker+"=3,4", "GOMAXPROCS=1")
}

// trackerStderr is the tracker's standard error: this process's, unless
// it is a pipe or a socket, which some process of the tree (a parent that
// captures this child's output) may be reading until every writer is gone;
// the tracker, which outlives the tree, would hold it open.
func trackerStderr(null *os.File) *os.File {
	var st unix.Stat_t
	if err := unix.Fstat(int(os.Stderr.Fd()), &st); err != nil {
		return null
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO, unix.S_IFSOCK:
		return null
	}
	return os.Stderr
}
