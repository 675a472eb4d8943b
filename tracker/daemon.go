// SPDX-License-Identifier: Apache-2.0

package tracker

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/multiproc/multiproc/process/starter"
)

// Exit codes of the tracker process (as CPython 3.13's).
const (
	exitClean     = 0 // nothing was left registered
	exitLeaked    = 1 // leaked resources were cleaned up
	exitFailed    = 2 // a cleanup failed
	exitMalformed = 3 // a malformed message was seen
)

// socketPrefix starts the abstract unix socket name on which a tracker
// answers list requests; its pid follows.
const socketPrefix = "multiproc-tracker-"

type key struct{ rtype, name string }

// state is the tracker's registry.
type state struct {
	mu  sync.Mutex
	m   map[key]int // -> pid of the registering process
	log *zap.Logger
	bad bool // a malformed message was seen
}

func (s *state) apply(m message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{m.rtype, normName(m.rtype, m.name)}
	switch m.op {
	case opRegister:
		if _, ok := cleanupFunc(m.rtype); !ok {
			s.log.Warn("tracker: register: unknown resource type", zap.String("type", m.rtype), zap.String("name", m.name), zap.Int("pid", m.pid))
			return
		}
		s.m[k] = m.pid
	case opUnregister:
		if _, ok := s.m[k]; !ok {
			s.log.Debug("tracker: unregister: not registered", zap.String("type", m.rtype), zap.String("name", m.name), zap.Int("pid", m.pid))
		}
		delete(s.m, k)
	}
}

// normName returns the name under which a resource is kept: CPython
// registers shared memory and semaphores with a leading "/" (shm_open's
// form), multiproc without it (gh-105380); both name the same resource.
func normName(rtype, name string) string {
	if rtype == SharedMemory || rtype == Semaphore {
		if n := strings.TrimLeft(name, "/"); n != "" {
			return n
		}
	}
	return name
}

// snapshot returns the registry, sorted by type and name.
func (s *state) snapshot() []Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Resource, 0, len(s.m))
	for k, pid := range s.m {
		out = append(out, Resource{Type: k.rtype, Name: k.name, Pid: pid, Tracker: os.Getpid()})
	}
	slices.SortFunc(out, func(a, b Resource) int {
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// consume decodes and applies the complete messages at the start of buf
// and returns what is left (the start of a message).
func (s *state) consume(buf []byte) []byte {
	for len(buf) > 0 {
		m, n, err := decode(buf)
		if errors.Is(err, errShort) {
			break
		}
		buf = buf[n:]
		if err != nil {
			s.bad = true
			s.log.Warn("tracker: ignoring a malformed message", zap.Error(err))
			continue
		}
		s.apply(m)
	}
	return buf
}

// cleanup cleans up what is still registered and returns the exit code.
func (s *state) cleanup() int {
	code := exitClean
	left := s.snapshot()
	leaked := 0
	for _, r := range left {
		fn, _ := cleanupFunc(r.Type)
		err := fn(r.Name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			s.log.Debug("tracker: registered resource already gone", zap.String("type", r.Type), zap.String("name", r.Name))
		case err != nil:
			code = exitFailed
			s.log.Error("tracker: cannot clean up a leaked resource", zap.String("type", r.Type), zap.String("name", r.Name), zap.Int("pid", r.Pid), zap.Error(err))
		default:
			leaked++
			if code == exitClean {
				code = exitLeaked
			}
			s.log.Warn("tracker: leaked resource cleaned up at shutdown", zap.String("type", r.Type), zap.String("name", r.Name), zap.Int("pid", r.Pid))
		}
	}
	if leaked > 0 {
		s.log.Warn("tracker: leaked resources were cleaned up: unlink them, or create them untracked", zap.Int("count", leaked))
	}
	if s.bad && code == exitClean {
		code = exitMalformed
	}
	return code
}

// runTracker is the tracker process (an init hook of the process
// package): fd 3 is the read end of the tree's pipe, fd 4 the pipe on
// which it tells its starter that it is ready. It never returns.
func runTracker(string) {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM)
	// Close what was inherited by accident (opened without close-on-exec by
	// the tracker's starter): a stray write end of some pipe would keep
	// another reader waiting for the tracker, which outlives the tree.
	starter.CloseStrayFDs(4)
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	ready := os.NewFile(4, "tracker-ready")
	unix.SetNonblock(3, true)
	log := zap.New(zapcore.NewCore(
		zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		zapcore.Lock(os.Stderr), levelFromEnv()),
	).With(zap.Int("tracker", os.Getpid()))
	s := &state{m: map[key]int{}, log: log}
	r := &reader{fd: 3, s: s, buf: make([]byte, 0, 64<<10)}

	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@" + socketPrefix + strconv.Itoa(os.Getpid()), Net: "unix"})
	if err != nil {
		log.Warn("tracker: cannot listen for list requests", zap.Error(err))
	} else {
		go serveList(ln, s, r)
	}
	ready.Write([]byte("ok"))
	ready.Close()

	for {
		got, eof := r.drain()
		if eof {
			break
		}
		if got {
			// Messages come in bursts (a loop creating and unlinking
			// segments). Reading again only after a pause lets a burst
			// gather in the pipe: meanwhile no reader waits on it, so each
			// writer's write(2) wakes no process, and one read takes many
			// messages. The pipe holds 64 KiB (some 1,800 messages); a
			// writer that fills it just waits for the next read. Idle, the
			// tracker blocks in poll as before.
			time.Sleep(coalesceDelay)
			continue
		}
		pfd := []unix.PollFd{{Fd: 3, Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, -1); err != nil && err != unix.EINTR {
			log.Error("tracker: poll", zap.Error(err))
			break
		}
	}
	if len(r.buf) > 0 {
		s.bad = true
		log.Warn("tracker: truncated message at end of input", zap.Int("bytes", len(r.buf)))
	}
	if ln != nil {
		ln.Close()
	}
	code := s.cleanup()
	log.Sync()
	os.Exit(code)
}

// levelFromEnv reads MULTIPROC_TRACKER_LOG (debug, info, warn, error);
// warn by default.
func levelFromEnv() zapcore.Level {
	var l zapcore.Level = zapcore.WarnLevel
	if v := os.Getenv("MULTIPROC_TRACKER_LOG"); v != "" {
		if err := l.Set(v); err != nil {
			l = zapcore.WarnLevel
		}
	}
	return l
}

// reader reads the tree's pipe (non-blocking). Both the main loop and a
// list request drain it, so that a list answers with every message
// written to the pipe before the request was made.
type reader struct {
	mu  sync.Mutex
	fd  int
	s   *state
	buf []byte // the start of a message not yet complete
	eof bool
}

// coalesceDelay is the pause of the tracker's read loop after a read that
// found messages (see runTracker). It bounds the extra delay with which
// the tracker notices the end of the tree.
const coalesceDelay = time.Millisecond

// drain reads and applies what the pipe holds. It reports whether it read
// anything, and EOF (every process of the tree is gone) or a read error.
func (r *reader) drain() (got, eof bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for !r.eof {
		if len(r.buf) == cap(r.buf) {
			r.buf = slices.Grow(r.buf, cap(r.buf))
		}
		n, err := unix.Read(r.fd, r.buf[len(r.buf):cap(r.buf)])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return got, false
		case err != nil:
			r.s.log.Error("tracker: read", zap.Error(err))
			r.eof = true
		case n == 0:
			r.eof = true
		default:
			got = true
			rest := r.s.consume(r.buf[:len(r.buf)+n])
			r.buf = append(r.buf[:0], rest...)
		}
	}
	return got, true
}

// serveList answers list requests until ln is closed.
func serveList(ln *net.UnixListener, s *state, r *reader) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("tracker: accept", zap.Error(err))
			continue
		}
		go answerList(c, s, r)
	}
}

// answerList writes the registry as register messages to a peer of the
// same user (or root), then closes the connection.
func answerList(c *net.UnixConn, s *state, r *reader) {
	defer c.Close()
	if !peerAllowed(c) {
		return
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var req [1]byte
	if _, err := io.ReadFull(c, req[:]); err != nil || req[0] != 'L' {
		return
	}
	r.drain()
	out := []byte{'K'}
	for _, x := range s.snapshot() {
		out = encode(out, message{op: opRegister, rtype: x.Type, name: x.Name, pid: x.Pid})
	}
	c.Write(out)
}

func peerAllowed(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var cerr error
	raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if cerr != nil || cred == nil {
		return false
	}
	return cred.Uid == 0 || int(cred.Uid) == os.Getuid()
}
