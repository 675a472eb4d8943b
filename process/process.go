// SPDX-License-Identifier: Apache-2.0

package process

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/internal/base/valenc"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/process/internal/plumbing"
	"github.com/multiproc/multiproc/process/starter"
	pb "github.com/multiproc/multiproc/proto/process/v1"
)

// Process runs a registered function in a child process. It is shaped
// like os/exec.Cmd: fill in the fields, then Start once and Wait once (or
// Join, then Close). The zero value of every field but Func is useful.
//
// The fields must not be changed after Start. The methods are safe for
// concurrent use: any number of goroutines may Join, poll Alive or
// ExitCode and signal the process at the same time.
type Process struct {
	// Func is the registered function to run (see Register).
	Func *Func
	// Args are the function's arguments after its context, one per
	// parameter; each must be assignable to the parameter's type. Handles
	// (values with MultiprocHandle, e.g. an *ipc.Conn) travel with their
	// files and are rebuilt in the child; other values are encoded by
	// ipc.DefaultCodec. Encoding errors are reported by Start.
	Args []any
	// Name is the process name; empty means Python's default,
	// "Process-<ident>" (e.g. "Process-3", or "Process-1:2" for the second
	// child of the first child).
	Name string
	// Daemon marks a daemonic child: it dies with its parent however the
	// parent dies, Shutdown terminates it instead of waiting for it, and
	// it may not start children of its own.
	Daemon bool
	// Env holds KEY=VALUE pairs added to the parent's environment (a later
	// pair overrides an earlier one and the parent's).
	Env []string
	// Stdin is the child's standard input; nil means /dev/null. An
	// *os.File is given to the child as it is; any other reader is copied
	// by a goroutine through a pipe, and Wait waits for that copy.
	Stdin io.Reader
	// Stdout and Stderr are the child's standard output and error; nil
	// means the parent's own os.Stdout and os.Stderr (as in Python, and
	// unlike os/exec.Cmd). An *os.File is given to the child as it is; any
	// other writer receives the output through a pipe and a goroutine,
	// and Wait waits until the output is fully copied (that is, until
	// every process holding the pipe, grandchildren included, closed it).
	// When Stdout and Stderr are the same writer (==, as with os/exec),
	// both go through one pipe, so one goroutine at a time writes to it.
	Stdout, Stderr io.Writer
	// Starter starts the child; nil means DefaultStarter() (Spawn unless
	// SetDefaultStarter chose another).
	Starter Starter
	// Logger receives the package's diagnostics about this process; nil
	// means zap.NewNop(). Its level is also the child's log level (see
	// Logger in the child).
	Logger *zap.Logger
	// TermGrace is how long the child's function may take to return after
	// SIGTERM (Terminate) or, for a daemon, its parent's death cancelled
	// its context; past it the child dies of SIGTERM anyway. 0 means one
	// second; negative means that SIGTERM kills the child at once.
	TermGrace time.Duration

	mu      sync.Mutex
	started bool
	closed  bool
	waited  bool
	child   starter.Child
	pid     int
	name    string
	method  string
	log     *zap.Logger
	status  int // parent end of the status socketpair (non-blocking), or -1
	copies  []func() error
	copyErr error

	waitSem chan struct{} // held by the goroutine calling child.Wait
	done    chan struct{} // closed once reaped and finished
	code    int
	result  error
}

// envChild marks a spawned child; its value is "<bootstrap fd>:<number of
// inherited files>".
const envChild = "MULTIPROC_CHILD"

// maxBootstrap bounds the bootstrap message a child accepts.
const maxBootstrap = 1 << 30

// defaultTermGrace is the default for Process.TermGrace.
const defaultTermGrace = time.Second

var (
	childCounter atomic.Uint32

	active struct {
		sync.Mutex
		m map[*Process]struct{}
	}
)

// Start starts the child. ctx bounds the start only (it matters for
// starters that talk to a server); it does not end the child, which runs
// until its function returns or it is signalled.
//
// Start returns ErrAlreadyStarted on a second call, ErrUnknownFunction or
// ErrBadArgs when Func or Args are wrong, and an error from encoding an
// argument or from the starter. On error nothing is left behind.
func (p *Process) Start(ctx context.Context) (err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return ErrClosed
	case p.started:
		return ErrAlreadyStarted
	case p.Func == nil:
		return fmt.Errorf("%w: Process.Func is nil", ErrUnknownFunction)
	}
	if f, ok := lookup(p.Func.name); !ok || f != p.Func {
		return fmt.Errorf("%w: %q (make Funcs with process.Register)", ErrUnknownFunction, p.Func.name)
	}
	if v, ok := os.LookupEnv(envChild); ok {
		noInitChild(v)
		return ErrNoInit
	}
	me := current()
	if me.daemon {
		return ErrDaemonChildren
	}
	if err := p.Func.checkArgs(p.Args); err != nil {
		return err
	}
	st := p.Starter
	if st == nil {
		st = DefaultStarter()
	}
	p.log = p.Logger
	if p.log == nil {
		p.log = zap.NewNop()
	}

	// Every file here is the parent's copy of something the child gets:
	// closed once the starter is done with them, whatever happens.
	var files []*os.File
	var closeAfter []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
		for _, f := range closeAfter {
			f.Close()
		}
	}()
	sp, err := statusSocketpair(st)
	if err != nil {
		return err
	}
	statusFD := sp[0]
	defer func() {
		if err != nil {
			unix.Close(statusFD)
		}
	}()
	files = append(files, os.NewFile(uintptr(sp[1]), "multiproc-status"))

	ident := append(slices.Clone(me.ident), childCounter.Add(1))
	name := p.Name
	if name == "" {
		name = "Process-" + identString(ident)
	}
	grace := p.TermGrace
	if grace == 0 {
		grace = defaultTermGrace
	}
	parentStart := myStartTime()
	boot := &pb.Bootstrap{
		Function:        p.Func.name,
		Name:            name,
		Authkey:         Authkey(),
		LogLevel:        int32(logLevel(p.log)),
		Daemon:          p.Daemon,
		Status:          0,
		ParentPid:       int64(os.Getpid()),
		ParentStartTime: parentStart,
		StartMethod:     st.Name(),
		Ident:           ident,
		Env:             p.Env,
		TermGraceNs:     int64(grace),
	}
	addFiles := func(fs []*os.File) []uint32 {
		idx := make([]uint32, len(fs))
		for i, f := range fs {
			idx[i] = uint32(len(files))
			files = append(files, f)
		}
		return idx
	}
	for i, a := range p.Args {
		if p.Func.params[i].handle {
			hf, desc, err := a.(handler).MultiprocHandle()
			if err != nil {
				return fmt.Errorf("process: %s: argument %d (%T): %w", p.Func.name, i, a, err)
			}
			boot.Args = append(boot.Args, &pb.Argument{Kind: &pb.Argument_Handle{Handle: &pb.HandleRef{
				Kind: reflect.TypeOf(a).String(), Files: addFiles(hf), Desc: desc,
			}}})
			continue
		}
		data, err := ipc.DefaultCodec.Marshal(a)
		if err != nil {
			return fmt.Errorf("process: %s: argument %d: %w", p.Func.name, i, err)
		}
		boot.Args = append(boot.Args, &pb.Argument{Kind: &pb.Argument_Value{Value: &pb.Value{
			Encoding: encodingOf(a), Data: data,
		}}})
	}
	plumbing.Inherited.Lock()
	providers := slices.Clone(plumbing.Inherited.Providers)
	plumbing.Inherited.Unlock()
	for _, in := range providers {
		hf, desc, err := in.Fn()
		if err != nil {
			return fmt.Errorf("process: inherited handle %q: %w", in.Key, err)
		}
		if len(hf) == 0 && desc == nil {
			continue
		}
		boot.Inherited = append(boot.Inherited, &pb.Inherited{Key: in.Key, Handle: &pb.HandleRef{Files: addFiles(hf), Desc: desc}})
	}

	// A child that Spawn forks at Start has the parent's working directory
	// already. Another Starter's child (a forkserver's, started ahead of
	// time) gets it as a handle and changes to it before running anything,
	// as CPython's preparation data does with "dir".
	if st != Spawn {
		if fd, err := unix.Open(".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			boot.Inherited = append(boot.Inherited, &pb.Inherited{Key: cwdKey, Handle: &pb.HandleRef{
				Files: addFiles([]*os.File{os.NewFile(uintptr(fd), "multiproc-cwd")}),
			}})
		} else {
			p.log.Debug("process: the working directory cannot be opened: the child keeps the one its Starter gives it", zap.Error(err))
		}
	}

	stdio, after, copies, err := p.stdio()
	closeAfter = append(closeAfter, after...)
	if err != nil {
		return err
	}
	bootBytes, err := proto.Marshal(boot)
	if err != nil {
		return fmt.Errorf("process: encode bootstrap: %w", err)
	}
	req := &starter.Request{
		Name:      name,
		Bootstrap: bootBytes,
		Files:     files,
		Env:       childEnv(p.Env),
		Stdin:     stdio[0],
		Stdout:    stdio[1],
		Stderr:    stdio[2],
		Daemon:    p.Daemon,
	}
	child, err := st.Start(ctx, req)
	if err != nil {
		for _, c := range copies {
			c.abort()
		}
		return err
	}
	p.started = true
	p.child = child
	p.pid = child.Pid()
	p.name = name
	p.method = st.Name()
	p.status = statusFD
	p.waitSem = make(chan struct{}, 1)
	p.done = make(chan struct{})
	for _, c := range copies {
		p.copies = append(p.copies, c.start())
	}
	active.Lock()
	if active.m == nil {
		active.m = map[*Process]struct{}{}
	}
	active.m[p] = struct{}{}
	active.Unlock()
	if ce := p.log.Check(zapcore.DebugLevel, "process: started"); ce != nil {
		ce.Write(zap.String("name", name), zap.Int("pid", p.pid), zap.String("func", p.Func.name),
			zap.String("method", p.method), zap.Bool("daemon", p.Daemon))
	}
	return nil
}

// statusSocketpair returns a child's status socketpair: the parent's end
// non-blocking, the child's blocking, both close-on-exec; made ahead by
// the Starter when it can (starter.StatusSockets).
func statusSocketpair(st Starter) ([2]int, error) {
	if ss, ok := st.(starter.StatusSockets); ok {
		if sp, ok := ss.StatusSocketpair(); ok {
			return sp, nil
		}
	}
	return starter.NewStatusSocketpair()
}

var myStartTime = sync.OnceValue(func() uint64 {
	t, _ := procStartTime(os.Getpid())
	return t
})

func identString(ident []uint32) string {
	parts := make([]string, len(ident))
	for i, n := range ident {
		parts[i] = strconv.FormatUint(uint64(n), 10)
	}
	return strings.Join(parts, ":")
}

// encodingOf names the rule ipc.DefaultCodec applied to a (multiproc's
// rules for a peer that may be another build: internal/base/valenc).
func encodingOf(a any) pb.Encoding {
	switch valenc.ClassOf(reflect.TypeOf(a)) {
	case valenc.Bytes:
		return pb.Encoding_ENCODING_RAW
	case valenc.Proto:
		return pb.Encoding_ENCODING_PROTO
	}
	return pb.Encoding_ENCODING_GOB
}

func logLevel(l *zap.Logger) zapcore.Level {
	return zapcore.LevelOf(l.Core())
}

// childEnv is the parent's environment plus overrides.
func childEnv(over []string) []string {
	env := os.Environ()
	if len(over) == 0 {
		return env
	}
	keys := map[string]bool{}
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		keys[k] = true
	}
	out := make([]string, 0, len(env)+len(over))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !keys[k] {
			out = append(out, kv)
		}
	}
	// the last of duplicate overrides wins
	seen := map[string]int{}
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := seen[k]; ok {
			out[i] = kv
			continue
		}
		seen[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// stdioCopy is a pending copy between a pipe and a user's reader or writer.
type stdioCopy struct {
	run   func() error
	abort func()
}

func (c stdioCopy) start() func() error {
	ch := make(chan error, 1)
	go func() { ch <- c.run() }()
	return func() error { return <-ch }
}

// stdio prepares the child's fds 0-2. after lists files to close once the
// child has started (its ends of pipes, /dev/null).
func (p *Process) stdio() (files [3]*os.File, after []*os.File, copies []stdioCopy, err error) {
	fail := func(e error) ([3]*os.File, []*os.File, []stdioCopy, error) {
		for _, c := range copies {
			c.abort()
		}
		return files, after, nil, e
	}
	switch r := p.Stdin.(type) {
	case nil:
		// /dev/null: the Starter's to provide (starter.Request).
	case *os.File:
		files[0] = r
	default:
		pr, pw, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		files[0] = pr
		after = append(after, pr)
		copies = append(copies, stdioCopy{
			run: func() error {
				_, err := io.Copy(pw, r)
				if cerr := pw.Close(); err == nil {
					err = cerr
				}
				if errors.Is(err, syscall.EPIPE) {
					err = nil // the child stopped reading: not the parent's error
				}
				return err
			},
			abort: func() { pw.Close() },
		})
	}
	for i, w := range []io.Writer{p.Stdout, p.Stderr} {
		switch w := w.(type) {
		case nil:
			files[i+1] = []*os.File{os.Stdout, os.Stderr}[i]
		case *os.File:
			files[i+1] = w
		default:
			if i == 1 && sameWriter(p.Stderr, p.Stdout) {
				files[2] = files[1] // one pipe, one copying goroutine
				continue
			}
			pr, pw, err := os.Pipe()
			if err != nil {
				return fail(err)
			}
			files[i+1] = pw
			after = append(after, pw)
			copies = append(copies, stdioCopy{
				run: func() error {
					_, err := io.Copy(w, pr)
					pr.Close()
					return err
				},
				abort: func() { pr.Close() },
			})
		}
	}
	return files, after, copies, nil
}

// sameWriter reports whether a and b are the same writer (as os/exec
// compares Stdout and Stderr); writers of incomparable types never are.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// ------------------------------------------------------------- waiting

// doneCtx is an already-cancelled context: Child.Wait with it polls.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func (p *Process) isDone() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait reaps the child if it has exited, blocking until then when block
// is true (and ctx allows). It reports whether the child is finished.
func (p *Process) wait(ctx context.Context, block bool) (bool, error) {
	if p.isDone() {
		return true, nil
	}
	if block && ctx.Err() == nil {
		select {
		case p.waitSem <- struct{}{}:
		case <-p.done:
			return true, nil
		case <-ctx.Done():
			return p.isDone(), ctx.Err()
		}
	} else {
		select {
		case p.waitSem <- struct{}{}:
		default:
			// another goroutine is waiting for the child right now
			return p.isDone(), nil
		}
	}
	defer func() { <-p.waitSem }()
	if p.isDone() {
		return true, nil
	}
	wctx := ctx
	if !block {
		wctx = doneCtx
	}
	code, err := p.child.Wait(wctx)
	if err != nil {
		if wctx.Err() != nil {
			if block {
				return false, ctx.Err()
			}
			return false, nil
		}
		return false, err
	}
	p.finish(code)
	return true, nil
}

// finish records the exit, collects the child's status messages and the
// stdio copies. Called once, by the goroutine holding waitSem.
func (p *Process) finish(code int) {
	started, final := readStatus(p.status)
	unix.Close(p.status)
	for _, c := range p.copies {
		if err := c(); err != nil && p.copyErr == nil {
			p.copyErr = err
		}
	}
	p.code = code
	p.result = p.exitError(code, started, final)
	if p.result == nil && p.copyErr != nil {
		p.result = fmt.Errorf("process: %s: copying stdio: %w", p.name, p.copyErr)
	}
	active.Lock()
	delete(active.m, p)
	active.Unlock()
	if ce := p.log.Check(zapcore.DebugLevel, "process: exited"); ce != nil {
		ce.Write(zap.String("name", p.name), zap.Int("pid", p.pid), zap.Int("exitcode", code), zap.Error(p.result))
	}
	close(p.done)
}

func (p *Process) exitError(code int, started bool, st *pb.ChildStatus) error {
	if code == 0 && started {
		return nil
	}
	e := &ExitError{Name: p.name, Pid: p.pid, Code: code}
	if code < 0 {
		e.Signal = syscall.Signal(-code)
	}
	switch {
	case st != nil && st.StartupError != "":
		e.Startup = true
		e.Message = st.StartupError
	case st != nil && st.Error != nil:
		e.Report = remote.Decode(st.Error)
	case !started && code == 0:
		e.Startup = true
		e.Message = "the child exited without running its function (does main call process.Init() first?)"
	case !started && code > 0:
		e.Startup = true
		e.Message = "the child exited before running its function (it may have failed in package initialisation; see its stderr)"
	}
	return e
}

// readStatus reads what the (exited) child wrote on its status socket.
func readStatus(fd int) (started bool, final *pb.ChildStatus) {
	var buf []byte
	chunk := make([]byte, 4096)
	for len(buf) < 4<<20 {
		n, err := unix.Read(fd, chunk)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			break
		}
		buf = append(buf, chunk[:n]...)
	}
	return parseStatus(buf)
}

// parseStatus decodes status frames; a malformed frame ends the parsing.
func parseStatus(buf []byte) (started bool, final *pb.ChildStatus) {
	for len(buf) >= 4 {
		n := int(binary.BigEndian.Uint32(buf))
		if n < 0 || n > len(buf)-4 {
			break
		}
		var st pb.ChildStatus
		if proto.Unmarshal(buf[4:4+n], &st) == nil {
			if st.Started {
				started = true
			}
			if st.Error != nil || st.StartupError != "" {
				final = &st
			}
		}
		buf = buf[4+n:]
	}
	return started, final
}

// Join waits until the child exits or ctx is done. It returns nil when the
// child exited with code 0, an *ExitError when it did not, and ctx.Err()
// when ctx ended first (the child keeps running). A ctx that is already
// done never blocks: Join then only checks whether the child has exited,
// like Python's join(0). Join may be called any number of times, from any
// number of goroutines.
func (p *Process) Join(ctx context.Context) error {
	p.mu.Lock()
	started, closed := p.started, p.closed
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if !started {
		return ErrNotStarted
	}
	done, err := p.wait(ctx, true)
	if done {
		return p.result
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// Wait waits for the child to exit, then releases its resources (Close).
// It returns what Join returns. Wait may be called once.
func (p *Process) Wait() error {
	p.mu.Lock()
	if p.waited {
		p.mu.Unlock()
		return ErrWaited
	}
	p.waited = true
	p.mu.Unlock()
	err := p.Join(context.Background())
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrNotStarted) {
		return err
	}
	p.Close()
	return err
}

// Close releases the child's pidfd. It returns ErrRunning if the child
// has not exited (Python's close() raises ValueError then). Close is
// idempotent, and a Process that was never started may be closed.
func (p *Process) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if p.started {
		if done, _ := p.wait(doneCtx, false); !done {
			return ErrRunning
		}
		p.child.Release()
	}
	p.closed = true
	return nil
}

// ExitCode returns the child's exit code in Python's convention (the exit
// status, or minus the signal number when a signal killed it: -15 after
// Terminate, -9 after Kill) and true, or 0 and false while the child has
// not exited or was never started. It reaps an exited child.
func (p *Process) ExitCode() (code int, exited bool) {
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if !started {
		return 0, false
	}
	if done, _ := p.wait(doneCtx, false); !done {
		return 0, false
	}
	return p.code, true
}

// Alive reports whether the child has started and not exited. It reaps an
// exited child.
func (p *Process) Alive() bool {
	p.mu.Lock()
	started, closed := p.started, p.closed
	p.mu.Unlock()
	if !started || closed {
		return false
	}
	done, _ := p.wait(doneCtx, false)
	return !done
}

// Pid returns the child's process id, or 0 before Start.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// ProcessName returns the name the child was given (Name, or the default
// "Process-<ident>" computed at Start), or Name before Start.
func (p *Process) ProcessName() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return p.name
	}
	return p.Name
}

// StartMethodName returns the name of the Starter that started the child.
func (p *Process) StartMethodName() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.method
}

// Terminate sends SIGTERM: the child's function sees its context
// cancelled and has TermGrace to return, after which (or when it returns)
// the child dies of SIGTERM, exit code -15, unless the function returned
// Exit(code). A child that already exited is not an error.
func (p *Process) Terminate() error { return p.Signal(syscall.SIGTERM) }

// Interrupt sends SIGINT (Python 3.14's interrupt()): unless the child's
// function handles it (os/signal), the child dies at once, exit code -2.
func (p *Process) Interrupt() error { return p.Signal(syscall.SIGINT) }

// Kill sends SIGKILL: the child dies at once, exit code -9.
func (p *Process) Kill() error { return p.Signal(syscall.SIGKILL) }

// Signal sends sig to the child (through its pidfd: never to another
// process that reused the pid). A child that already exited is not an
// error.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	started, closed, child := p.started, p.closed, p.child
	p.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case !started:
		return ErrNotStarted
	}
	if p.isDone() {
		return nil
	}
	return child.Signal(sig)
}

// Sentinel returns a value that ipc.Wait can wait on: its file descriptor
// (the child's pidfd) becomes readable when the child exits. It is valid
// until Close.
func (p *Process) Sentinel() Sentinel { return Sentinel{p} }

// Sentinel is a Process's exit, as something ipc.Wait waits on.
type Sentinel struct{ p *Process }

// WaitFD implements ipc.Waitable: fd becomes readable when the child
// exits; ready is true when it is known to have exited. It returns
// ErrNotStarted before Start and ErrClosed after Close.
func (s Sentinel) WaitFD() (fd uintptr, ready bool, err error) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return 0, false, ErrClosed
	case !p.started:
		return 0, false, ErrNotStarted
	}
	fd, ready, err = p.child.WaitFD()
	return fd, ready || p.isDone(), err
}

// String describes the process like Python's repr.
func (p *Process) String() string {
	p.mu.Lock()
	started, name := p.started, p.name
	p.mu.Unlock()
	if !started {
		return fmt.Sprintf("<Process name=%q initial>", p.Name)
	}
	if code, ok := p.ExitCode(); ok {
		return fmt.Sprintf("<Process name=%q pid=%d exitcode=%d>", name, p.Pid(), code)
	}
	return fmt.Sprintf("<Process name=%q pid=%d started>", name, p.Pid())
}
