// SPDX-License-Identifier: Apache-2.0

package forkserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process/starter"
	fspb "github.com/multiproc/multiproc/proto/forkserver/v1"
)

// envWarm marks a warm process; its value is the fd of its control socket.
const envWarm = "MULTIPROC_FORKSERVER_WARM"

// warmFD is where a warm process finds its control socket (the fourth
// entry of its ProcAttr.Files).
const warmFD = 3

// maxFilesPerFrame is how many files one frame carries (the kernel's
// SCM_MAX_FD is 253).
const maxFilesPerFrame = 253

// maxRequest is the largest Request frame: a bootstrap message as large
// as process allows (1 GiB) plus the environment.
const maxRequest = 1<<30 + 64<<20

// maxAttempts bounds how many warm processes one Start tries before it
// gives up (each failure is a warm process that died or never became
// ready).
const maxAttempts = 3

// maxDeadWarm bounds how many warm processes found dead at the hand-over
// one Start replaces without counting them as attempts: a program whose
// warm processes keep dying gets an error, not an endless loop.
const maxDeadWarm = 8

// DefaultSize is the number of warm processes a Starter keeps by default.
const DefaultSize = 2

// DefaultRefillDelay is how long, by default, a Starter waits after a
// start before it makes the replacement warm process (see RefillDelay).
const DefaultRefillDelay = 2 * time.Millisecond

// DefaultReadyTimeout bounds the wait for a new warm process to report
// that it is ready.
const DefaultReadyTimeout = 30 * time.Second

var (
	// ErrClosed is returned by Start and Warm after Close.
	ErrClosed = errors.New("forkserver: starter closed")
	// ErrNoInit is returned by Start in a warm process whose main did not
	// call process.Init first, so that it ran the program instead of
	// waiting for its request.
	ErrNoInit = errors.New("forkserver: this process was started as a warm process but main did not call process.Init() first")
)

// An Option configures a Starter.
type Option func(*options)

type options struct {
	size         int
	log          *zap.Logger
	readyTimeout time.Duration
	refillDelay  time.Duration
}

// Size sets how many warm processes the Starter keeps ready (DefaultSize
// by default). It must be at least 1. Each costs one idle process (a few
// MiB of resident memory) and one exec of the binary to make.
func Size(n int) Option { return func(o *options) { o.size = n } }

// Logger sets the logger for the Starter's diagnostics (warm processes
// started, found dead, replaced). The default is zap.NewNop().
func Logger(l *zap.Logger) Option { return func(o *options) { o.log = l } }

// RefillDelay sets how long after a start the Starter begins to make the
// warm process that replaces the one it used (DefaultRefillDelay by
// default; 0 starts it at once). Making a warm process is an exec of the
// binary and its initialisation: a few milliseconds of CPU. Started at
// once, on a machine with few CPUs it competes with the child just
// started, which on a 2-CPU machine made a short child's start+join about
// a third slower; a child that is done within the delay never meets it. A
// start that finds no warm process ready never waits for the delay: it
// asks for one at once.
func RefillDelay(d time.Duration) Option { return func(o *options) { o.refillDelay = d } }

// ReadyTimeout bounds how long a new warm process may take to finish its
// runtime and package initialisation and report ready
// (DefaultReadyTimeout by default). One that takes longer is killed and
// the start that waited for it fails.
func ReadyTimeout(d time.Duration) Option { return func(o *options) { o.readyTimeout = d } }

// Starter is a process.Starter whose children are warm processes: see the
// package documentation. Its methods are safe for concurrent use. Close it
// when done (it owns a goroutine and the warm processes).
type Starter struct {
	opts options

	mu      sync.Mutex
	closed  bool
	running bool // the refill goroutine was started

	kick         chan struct{} // cap 1: ask the refill goroutine to top up
	delayed      *time.Timer   // a deferred topUp (RefillDelay); guarded by mu
	delayPending bool          // delayed is armed; guarded by mu
	spares       chan [2]int   // status socketpairs made ahead (StatusSocketpair)
	warming      chan struct{} // cap 1: held by Warm
	ready        chan result   // warm processes ready to use (and refill errors)
	live         atomic.Int64  // warm processes made and not yet taken
	done         chan struct{} // closed by Close
	ctx          context.Context
	stop         context.CancelFunc
	wg           sync.WaitGroup
}

type result struct {
	w   *warm
	err error
}

// warm is one warm process, a direct child of this process.
type warm struct {
	pid   int
	child starter.Child // watches it through its pidfd
	conn  *ipc.Conn     // the control socket
	env   []string      // the environment it was started with
	// out is what it has on its fds 1 and 2: the program's os.Stdout and
	// os.Stderr of the time, as the file and its identity then.
	out [2]stdioFile
}

// stdioFile is a file a warm process was started with on fd 1 or 2.
type stdioFile struct {
	f        *os.File
	dev, ino uint64
}

// same reports whether f is s's file still open on the same object as
// when the warm process was started: a program may put another file on
// its fd 1 with dup2 after that, and a child must then get the new one.
func (s stdioFile) same(f *os.File) bool {
	if f == nil || f != s.f {
		return false
	}
	dev, ino, ok := fileID(f)
	return ok && dev == s.dev && ino == s.ino
}

// fileID returns the device and inode of f's descriptor.
func fileID(f *os.File) (dev, ino uint64, ok bool) {
	raw, err := f.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	var st unix.Stat_t
	var serr error = unix.EBADF
	raw.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) })
	return uint64(st.Dev), st.Ino, serr == nil
}

// New returns a Starter that keeps Size warm processes. It starts none
// until the first Start or Warm.
func New(opts ...Option) (*Starter, error) {
	o := options{size: DefaultSize, log: zap.NewNop(), readyTimeout: DefaultReadyTimeout, refillDelay: DefaultRefillDelay}
	for _, f := range opts {
		f(&o)
	}
	if o.size < 1 {
		return nil, fmt.Errorf("forkserver: Size(%d): must be at least 1", o.size)
	}
	if o.log == nil {
		o.log = zap.NewNop()
	}
	if o.readyTimeout <= 0 {
		return nil, fmt.Errorf("forkserver: ReadyTimeout(%v): must be positive", o.readyTimeout)
	}
	if o.refillDelay < 0 {
		return nil, fmt.Errorf("forkserver: RefillDelay(%v): must not be negative", o.refillDelay)
	}
	s := &Starter{
		opts:    o,
		kick:    make(chan struct{}, 1),
		warming: make(chan struct{}, 1),
		ready:   make(chan result, o.size+1),
		spares:  make(chan [2]int, o.size),
		done:    make(chan struct{}),
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	return s, nil
}

// Name returns "forkserver".
func (s *Starter) Name() string { return "forkserver" }

// Start hands req to a warm process, which becomes the child: it puts
// req's Stdin, Stdout and Stderr on its fds 0, 1 and 2 (keeping the
// /dev/null, stdout and stderr it was started with when they are what req
// asks for) and runs
// starter.RunChild with the bootstrap message and the files. When no warm
// process is ready, Start waits (bounded by ctx) for the one being made.
// A warm process found dead is replaced, and the start tried again.
func (s *Starter) Start(ctx context.Context, req *starter.Request) (starter.Child, error) {
	if _, ok := os.LookupEnv(envWarm); ok {
		return nil, ErrNoInit
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if n := 3 + len(req.Files); n > maxFiles {
		return nil, fmt.Errorf("forkserver: start %s: %d files, over the limit of %d", req.Name, n, maxFiles)
	}
	if len(req.Bootstrap) == 0 {
		return nil, fmt.Errorf("forkserver: start %s: empty bootstrap message", req.Name)
	}
	var last error
	dead := 0
	for i := 0; i < maxAttempts; i++ {
		w, err := s.take(ctx, false)
		if err != nil {
			if errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return nil, err
			}
			last = err
			continue
		}
		if h := testHookHand.Load(); h != nil {
			(*h)(w)
		}
		if err := w.hand(ctx, req); err != nil {
			s.opts.log.Debug("forkserver: hand-over failed, discarding warm process", zap.Int("pid", w.pid), zap.Error(err))
			// A warm process that died while it waited (killed by
			// someone) is met here, by the send, rather than by a reap
			// before every hand-over: replacing it does not use up an
			// attempt.
			_, werr := w.child.Wait(doneCtx)
			w.destroy()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if werr == nil && dead < maxDeadWarm {
				dead++
				s.topUp()
				i--
			}
			last = err
			continue
		}
		s.topUpLater()
		if ce := s.opts.log.Check(zapcore.DebugLevel, "forkserver: started"); ce != nil {
			ce.Write(zap.String("name", req.Name), zap.Int("pid", w.pid))
		}
		return w.child, nil
	}
	return nil, fmt.Errorf("forkserver: start %s: %w", req.Name, last)
}

// Warm makes the warm set full and waits until every warm process is
// ready, or ctx is done. Start does not need it; it makes the first starts
// as fast as the next ones.
func (s *Starter) Warm(ctx context.Context) error {
	// One Warm at a time: two that each held part of the set would wait
	// for each other.
	select {
	case s.warming <- struct{}{}:
		defer func() { <-s.warming }()
	case <-ctx.Done():
		return ctx.Err()
	}
	var got []*warm
	defer func() {
		// Put them back, unless Close came meanwhile and drained the set.
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, w := range got {
			if !s.closed {
				select {
				case s.ready <- result{w: w}:
					continue
				default: // full of stale errors: rare, and not worth a wait
				}
			}
			s.live.Add(-1)
			w.destroy()
		}
		if !s.closed {
			s.topUp()
		}
	}()
	for len(got) < s.opts.size {
		w, err := s.take(ctx, true)
		if err != nil {
			return err
		}
		got = append(got, w)
	}
	return nil
}

// Close kills the warm processes not yet used and stops the refill
// goroutine. Children already started are not affected: their Processes
// own them. Close is idempotent; Start and Warm return ErrClosed after it.
func (s *Starter) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.stop()
	if s.delayed != nil {
		s.delayed.Stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
	for {
		select {
		case sp := <-s.spares:
			unix.Close(sp[0])
			unix.Close(sp[1])
			continue
		default:
		}
		break
	}
	for {
		select {
		case r := <-s.ready:
			if r.w != nil {
				s.live.Add(-1)
				r.w.destroy()
			}
		default:
			return nil
		}
	}
}

// take returns a ready, live warm process. With keep, the warm process
// still counts as part of the set (Warm puts it back), so none is made to
// replace it.
func (s *Starter) take(ctx context.Context, keep bool) (*warm, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if !s.running {
		s.running = true
		s.wg.Add(1)
		go s.refill()
	}
	s.mu.Unlock()
	for {
		var r result
		select {
		case r = <-s.ready:
		default:
			s.topUp()
			select {
			case r = <-s.ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-s.done:
				return nil, ErrClosed
			}
		}
		if r.err != nil {
			return nil, r.err
		}
		if !keep {
			// Whether it is still alive is not checked on a start's path
			// (a reap through its pidfd, and the poller's locks): a dead
			// one fails the hand-over's send, and Start takes another.
			s.live.Add(-1)
			return r.w, nil
		}
		if _, err := r.w.child.Wait(doneCtx); err == nil {
			// It exited (killed by someone?) while it waited: reaped.
			s.opts.log.Debug("forkserver: warm process found dead, replacing it", zap.Int("pid", r.w.pid))
			r.w.conn.Close()
			r.w.child.Release()
			s.live.Add(-1)
			s.topUp()
			continue
		}
		return r.w, nil
	}
}

// testHookHand, set only by tests, runs in Start between taking a warm
// process and handing it the request: the moment at which a warm process
// killed by someone else is met by the hand-over itself.
var testHookHand atomic.Pointer[func(*warm)]

// doneCtx makes Child.Wait poll without blocking.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// StatusSocketpair returns a status socketpair made ahead by the refill
// goroutine (starter.StatusSockets): process.Process.Start then does not
// make one between Start and the hand-over.
func (s *Starter) StatusSocketpair() (fds [2]int, ok bool) {
	select {
	case sp := <-s.spares:
		return sp, true
	default:
		return fds, false
	}
}

// makeSpares fills the set of status socketpairs, one per warm process.
func (s *Starter) makeSpares() {
	for len(s.spares) < cap(s.spares) {
		sp, err := starter.NewStatusSocketpair()
		if err != nil {
			return
		}
		select {
		case s.spares <- sp:
		default:
			unix.Close(sp[0])
			unix.Close(sp[1])
			return
		}
	}
}

// topUpLater asks for a top-up after RefillDelay, unless one is already
// pending (a take that finds the set empty tops up at once anyway).
func (s *Starter) topUpLater() {
	if s.opts.refillDelay == 0 {
		s.topUp()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.delayPending {
		return
	}
	s.delayPending = true
	if s.delayed == nil {
		s.delayed = time.AfterFunc(s.opts.refillDelay, func() {
			s.mu.Lock()
			s.delayPending = false
			s.mu.Unlock()
			s.topUp()
		})
		return
	}
	s.delayed.Reset(s.opts.refillDelay)
}

func (s *Starter) topUp() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// refill keeps the warm set full, one warm process at a time, until
// Close. It stops after a failure until the next take asks again, so that
// a binary that cannot make warm processes does not start them in a loop.
func (s *Starter) refill() {
	defer s.wg.Done()
	for {
		select {
		case <-s.kick:
		case <-s.done:
			return
		}
		s.makeSpares()
		for s.live.Load() < int64(s.opts.size) {
			w, err := s.spawn(s.ctx)
			if s.ctx.Err() != nil {
				if w != nil {
					w.destroy()
				}
				return
			}
			if err != nil {
				// The next take returns it (an error is handled once).
				select {
				case s.ready <- result{err: err}:
				default:
					s.opts.log.Warn("forkserver: cannot make a warm process", zap.Error(err))
				}
				break
			}
			s.live.Add(1)
			select {
			case s.ready <- result{w: w}:
			case <-s.done:
				// Only when stale errors fill the channel and Close came.
				s.live.Add(-1)
				w.destroy()
				return
			}
		}
	}
}

// spawn starts a warm process and waits until it is ready.
func (s *Starter) spawn(ctx context.Context) (*warm, error) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("forkserver: %w", os.NewSyscallError("socketpair", err))
	}
	childEnd := sp[1] // closed after the exec, so that its exit is our EOF
	pf := os.NewFile(uintptr(sp[0]), "forkserver-control")
	conn, err := ipc.NewConn(pf, pf, ipc.MaxFrameSize(maxRequest))
	if err != nil {
		pf.Close()
		unix.Close(childEnd)
		return nil, fmt.Errorf("forkserver: %w", err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("forkserver: %w", err)
	}
	defer devnull.Close()
	stdout, stderr := os.Stdout, os.Stderr
	fds := []uintptr{rawFD(devnull), rawFD(stdout), rawFD(stderr), uintptr(childEnd)}
	var out [2]stdioFile
	for i, fd := range fds {
		if fd == badFD {
			fds[i] = rawFD(devnull)
			continue
		}
		if i == 1 || i == 2 {
			f := []*os.File{stdout, stderr}[i-1]
			if dev, ino, ok := fileID(f); ok {
				out[i-1] = stdioFile{f: f, dev: dev, ino: ino}
			}
		}
	}
	env := os.Environ()
	pidfd := -1
	attr := &syscall.ProcAttr{
		Env:   append(env[:len(env):len(env)], envWarm+"="+strconv.Itoa(warmFD)),
		Files: fds,
		// No death signal: it would kill a warm process that has its
		// request in its socket but has not yet cleared the signal, when
		// this process dies just after Start returned; a non-daemonic
		// child must survive that. A warm process dies with this process
		// by its lifeline instead: EOF on the control socket, however this
		// process died. The hand-over sets the death signal a daemon needs.
		Sys: &syscall.SysProcAttr{PidFD: &pidfd},
	}
	pid, err := syscall.ForkExec("/proc/self/exe", []string{os.Args[0]}, attr)
	unix.Close(childEnd)
	runtime.KeepAlive(devnull)
	runtime.KeepAlive(stdout)
	runtime.KeepAlive(stderr)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("forkserver: start a warm process: %w", err)
	}
	if pidfd < 0 {
		syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, 0, nil)
		conn.Close()
		return nil, errors.New("forkserver: the kernel gave no pidfd (Linux 5.3 or later is needed)")
	}
	child, err := starter.ChildFromPidfd(pid, pidfd)
	if err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, 0, nil)
		conn.Close()
		return nil, fmt.Errorf("forkserver: %w", err)
	}
	w := &warm{pid: pid, child: child, conn: conn, env: env, out: out}
	rctx, cancel := context.WithTimeout(ctx, s.opts.readyTimeout)
	defer cancel()
	b, err := conn.RecvBytes(rctx)
	if err == nil {
		var r fspb.Ready
		if err = proto.Unmarshal(b, &r); err == nil && r.Pid != int64(pid) {
			err = fmt.Errorf("it says it is pid %d", r.Pid)
		}
	}
	if err != nil {
		conn.Close()
		if ctx.Err() == nil && rctx.Err() == nil {
			// It ended before it was ready: say how.
			wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
			code, werr := child.Wait(wctx)
			wcancel()
			if werr == nil {
				child.Release()
				return nil, fmt.Errorf("forkserver: warm process %d exited with code %d before it was ready "+
					"(does main call process.Init() first?): %w", pid, code, err)
			}
		}
		w.destroy()
		if rctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("forkserver: warm process %d not ready after %v: %w", pid, s.opts.readyTimeout, err)
		}
		return nil, fmt.Errorf("forkserver: warm process %d: %w", pid, err)
	}
	if ce := s.opts.log.Check(zapcore.DebugLevel, "forkserver: warm process ready"); ce != nil {
		ce.Write(zap.Int("pid", pid))
	}
	return w, nil
}

// hand sends req to w. On success w's control socket is closed: the child
// now has its parent's status socket (in the bootstrap) as its lifeline.
// It is closed at once, before the warm process closes its end: the other
// way round, the end of stream wakes this program's netpoller thread while
// the child runs, which made the child's first message reach the program
// 80-100 µs later on a loaded 2-CPU VM (more than the close costs here).
func (w *warm) hand(ctx context.Context, req *starter.Request) error {
	// The stdio the warm process already has is not passed: /dev/null
	// for a nil Stdin, and the program's stdout and stderr when they are
	// still those it was started with.
	files := make([]*os.File, 0, 3+len(req.Files))
	var keep uint32
	if req.Stdin == nil {
		keep |= 1
	} else {
		files = append(files, req.Stdin)
	}
	for i, f := range []*os.File{req.Stdout, req.Stderr} {
		if f == nil {
			f = []*os.File{os.Stdout, os.Stderr}[i]
		}
		if w.out[i].same(f) {
			keep |= 2 << i
		} else {
			files = append(files, f)
		}
	}
	files = append(files, req.Files...)
	msg := &fspb.Request{
		Bootstrap: req.Bootstrap,
		Files:     uint32(len(files)),
		Daemon:    req.Daemon,
		Name:      req.Name,
		KeepStdio: keep,
	}
	if req.Env != nil && !slices.Equal(req.Env, w.env) {
		msg.ReplaceEnv = true
		msg.Env = req.Env
	}
	b := appendRequest(make([]byte, 0, len(req.Bootstrap)+len(req.Name)+64), msg)
	for len(files) > 0 || b != nil {
		n := min(len(files), maxFilesPerFrame)
		if err := w.conn.SendFiles(ctx, b, files[:n]...); err != nil {
			return err
		}
		files, b = files[n:], nil
	}
	return w.conn.Close()
}

// destroy kills, reaps and forgets a warm process.
func (w *warm) destroy() {
	w.conn.Close()
	w.child.Signal(syscall.SIGKILL)
	w.child.Wait(context.Background())
	w.child.Release()
}

const badFD = ^uintptr(0)

// rawFD returns f's descriptor without changing its blocking mode, or
// badFD.
func rawFD(f *os.File) uintptr {
	if f == nil {
		return badFD
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return badFD
	}
	fd := badFD
	raw.Control(func(x uintptr) { fd = x })
	return fd
}
