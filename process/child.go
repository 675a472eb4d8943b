// SPDX-License-Identifier: Apache-2.0

package process

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/signal"
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

	"github.com/multiproc/multiproc/internal/base/text"
	"github.com/multiproc/multiproc/internal/base/valenc"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/process/internal/plumbing"
	"github.com/multiproc/multiproc/process/starter"
	commonpb "github.com/multiproc/multiproc/proto/common/v1"
	pb "github.com/multiproc/multiproc/proto/process/v1"
)

// Init turns the running program into a child's registered function when
// it was started as a multiproc child, and returns at once otherwise. Call
// it first thing in main (and in TestMain), before any other work:
//
//	func main() {
//		process.Init()
//		...
//	}
//
// In a child Init never returns: it reads the bootstrap message, rebuilds
// the arguments, runs the function and exits (0 on success; 1 when the
// function returned an error or panicked, which the parent's Wait reports
// with the text and stack; the code given to Exit; -15 when terminated).
// In the parent it costs one environment lookup.
func Init() {
	plumbing.Initialized.Store(true)
	v, ok := os.LookupEnv(envChild)
	if !ok {
		runInitHooks()
		return
	}
	os.Unsetenv(envChild)
	fd0, n, err := parseChildEnv(v)
	if err != nil {
		childFatal(fmt.Errorf("process: bad %s=%q: %w", envChild, v, err))
	}
	starter.CloseStrayFDs(fd0 + n)
	files := make([]*os.File, n)
	for i := range files {
		fd := fd0 + 1 + i
		unix.CloseOnExec(fd) // a grandchild gets only what it is given
		files[i] = os.NewFile(uintptr(fd), "inherited-"+strconv.Itoa(i))
	}
	b, err := readBootstrap(fd0)
	if err != nil {
		st := openStatus(files, 0)
		st.startupError(fmt.Sprintf("process: read bootstrap message: %v", err))
		os.Exit(1)
	}
	runChildAndExit(b, files)
}

func parseChildEnv(v string) (fd0, n int, err error) {
	a, b, ok := strings.Cut(v, ":")
	if !ok {
		return 0, 0, errors.New("want <fd>:<count>")
	}
	if fd0, err = strconv.Atoi(a); err != nil || fd0 < 3 {
		return 0, 0, errors.New("bad fd")
	}
	if n, err = strconv.Atoi(b); err != nil || n < 0 || n > 4096 {
		return 0, 0, errors.New("bad count")
	}
	return fd0, n, nil
}

// noInitChild runs in a program that was started as a multiproc child but
// whose main did not call Init, and now starts a child of its own. It tells
// the parent why this child never ran its function, on the status socket,
// and exits: the parent's Start or Wait then reports ErrNoInit's advice,
// once, instead of every such child printing it on the shared stderr. It
// returns when the inherited descriptors are not a child's (the bootstrap a
// regular file, the status a socket), as in a test that sets the variable.
func noInitChild(v string) {
	fd0, n, err := parseChildEnv(v)
	if err != nil || n < 1 {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(fd0, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	if unix.Fstat(fd0+1, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return
	}
	openStatus([]*os.File{os.NewFile(uintptr(fd0+1), "status")}, 0).startupError(
		"main did not call process.Init() first, so the child ran main instead of its function; " +
			"call process.Init() first thing in main (and in TestMain)")
	os.Exit(1)
}

// childFatal is the last resort when there is no status socket to report
// on: the child's stderr is all that is left.
func childFatal(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func init() {
	plumbing.RunChild = runChildAndExit
	plumbing.PrepareChild = func() {
		prepareChild()
		warmChildPath()
	}
}

// termWatch is a child's SIGTERM watcher: SIGTERM cancels the function's
// context (handler, set by runChild), or, before there is a function, ends
// the process as SIGTERM's default action would.
var termWatch struct {
	once    sync.Once
	handler atomic.Pointer[func()]
}

// prepareChild does what runChild needs that does not depend on the
// bootstrap message: it starts the SIGTERM watcher. signal.Notify is a
// round trip to the runtime's signal-mask thread (about 70 µs measured on
// a loaded 2-CPU VM), which a Starter's warm process pays ahead of its
// request (starter.PrepareChild). Idempotent.
func prepareChild() {
	termWatch.once.Do(func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		go func() {
			for range sigs {
				if h := termWatch.handler.Load(); h != nil {
					(*h)()
					continue
				}
				dieOfSignal(syscall.SIGTERM)
			}
		}()
	})
}

// warmChildPath runs, once, in a process that becomes a child later (a
// Starter's warm process, through starter.PrepareChild), parts of a
// child's start on throwaway descriptors: taking the status socket
// (openStatus) and attaching a Conn handed over as an argument, the most
// common handle. Code a process runs for the first time costs it a page
// fault per page of code and data it touches, which a child started from
// a warm process would otherwise pay between its request and its
// function: attaching a Conn took about 25 µs of that path before, 8 µs
// after (the project's 2-CPU VM, docs/performance.md).
func warmChildPath() {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return
	}
	unix.Close(sp[1])
	if st := openStatus([]*os.File{os.NewFile(uintptr(sp[0]), "warm-status")}, 0); st.file != nil {
		st.file.Close()
	}
	r, w, err := os.Pipe()
	if err != nil {
		return
	}
	c, err := ipc.NewConn(r, w)
	if err != nil {
		return
	}
	defer c.Close()
	files, desc, err := c.MultiprocHandle()
	if err != nil {
		return
	}
	v := reflect.New(reflect.TypeFor[ipc.Conn]())
	if v.Interface().(attacher).MultiprocAttach(files, desc) == nil {
		v.Interface().(*ipc.Conn).Close()
	}
}

// runChildAndExit runs a child from its bootstrap message and
// inherited-file table, then exits; it never returns. Init calls it for
// spawned children; a Starter whose children are not exec'd (a
// forkserver's warm process) reaches it through starter.RunChild. It takes
// ownership of files.
func runChildAndExit(bootstrap []byte, files []*os.File) {
	os.Exit(runChild(bootstrap, files))
}

func runChild(b []byte, files []*os.File) int {
	boot, err := parseBootstrap(b, len(files))
	if err != nil {
		openStatus(files, 0).startupError(err.Error())
		return 1
	}
	st := openStatus(files, int(boot.Status))
	files[boot.Status] = nil
	s := current()
	s.child = true
	s.name = boot.Name
	s.ident = boot.Ident
	s.daemon = boot.Daemon
	s.method = boot.StartMethod
	s.level = zapcore.Level(boot.LogLevel)
	s.authkey = boot.Authkey
	s.parent = &ParentProcess{Pid: int(boot.ParentPid), StartTime: boot.ParentStartTime, lifeline: st.fd}
	if st.fd >= 0 {
		s.parent.gone = make(chan struct{})
	}
	for _, kv := range boot.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && os.Getenv(k) != v {
			os.Setenv(k, v)
		}
	}
	if err := takeWorkingDir(boot, files); err != nil {
		st.startupError(err.Error())
		return 1
	}
	f, ok := lookup(boot.Function)
	if !ok {
		st.startupError(fmt.Sprintf("%v: %q is not registered in this binary (register it at package level, not conditionally)", ErrUnknownFunction, boot.Function))
		return 1
	}
	args, err := decodeArgs(f, boot.Args, files)
	if err != nil {
		st.startupError(err.Error())
		return 1
	}
	plumbing.Inherited.Lock()
	plumbing.Inherited.Table = files
	plumbing.Inherited.Received = map[string]*pb.HandleRef{}
	for _, in := range boot.Inherited {
		plumbing.Inherited.Received[in.Key] = in.Handle
	}
	plumbing.Inherited.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var terminated atomic.Bool
	grace := time.Duration(boot.TermGraceNs)
	if grace == 0 {
		grace = defaultTermGrace
	}
	terminate := func() {
		if terminated.Swap(true) {
			return
		}
		cancel()
		if grace < 0 {
			dieOfSignal(syscall.SIGTERM)
		}
		time.AfterFunc(grace, func() { dieOfSignal(syscall.SIGTERM) })
	}
	onTerm := func() {
		s.log().Debug("process: SIGTERM: cancelling the function's context", zap.Duration("grace", grace))
		terminate()
	}
	prepareChild()
	termWatch.handler.Store(&onTerm)
	// The lifeline watcher: a daemon needs it from the start; any other
	// child only once its code asks for Parent().Done() (Alive polls), which
	// keeps a goroutine, and the thread the runtime would start for it, off
	// the start-up path.
	watch := func() {
		go func() {
			st.waitParentGone()
			close(s.parent.gone)
			if boot.Daemon {
				s.log().Debug("process: parent gone: a daemonic child terminates", zap.Int("parent", int(boot.ParentPid)))
				terminate()
			}
		}()
	}
	if s.parent.gone != nil {
		if boot.Daemon {
			watch()
		} else {
			s.parent.watch = sync.OnceFunc(watch)
		}
	}
	st.write(startedFrame)

	rerr, err := call(ctx, f, args)
	var ec *exitCodeError
	if terminated.Load() {
		if errors.As(err, &ec) {
			return ec.code
		}
		dieOfSignal(syscall.SIGTERM)
	}
	// Like Python's exit: terminate daemonic children, wait for the others.
	Shutdown(context.Background())
	switch {
	case rerr != nil:
		st.send(&pb.ChildStatus{Error: rerr})
		return 1
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return ec.code
	}
	st.send(&pb.ChildStatus{Error: remote.Capture(err)})
	return 1
}

// cwdKey is the inherited handle that carries the parent's working
// directory (an O_PATH descriptor) to a child that a Starter did not fork
// at Start.
const cwdKey = "process.cwd"

// takeWorkingDir changes to the parent's working directory when the
// bootstrap message carries it, and removes it from boot.Inherited.
func takeWorkingDir(boot *pb.Bootstrap, files []*os.File) error {
	for i, in := range boot.Inherited {
		if in.Key != cwdKey {
			continue
		}
		boot.Inherited = slices.Delete(boot.Inherited, i, i+1)
		fs, err := plumbing.TakeFiles(files, in.GetHandle().GetFiles())
		if err != nil || len(fs) != 1 {
			return fmt.Errorf("process: the parent's working directory: bad handle (%v)", err)
		}
		err = unix.Fchdir(int(fs[0].Fd()))
		fs[0].Close()
		if err != nil {
			return fmt.Errorf("process: change to the parent's working directory: %w", os.NewSyscallError("fchdir", err))
		}
		return nil
	}
	return nil
}

const maxReport = 64 << 10

func truncate(s string) string {
	return text.Clip(s, maxReport, "\n... (truncated)")
}

// call runs f; a panic (or runtime.Goexit) becomes a RemoteError.
func call(ctx context.Context, f *Func, args []reflect.Value) (rerr *commonpb.RemoteError, err error) {
	returned := false
	defer func() {
		if returned {
			return
		}
		rerr = remote.CapturePanic(recover())
	}()
	if f.invoke != nil {
		err = f.invoke(ctx, args)
		returned = true
		return nil, err
	}
	in := append([]reflect.Value{reflect.ValueOf(ctx)}, args...)
	out := f.fn.Call(in)
	returned = true
	if f.retErr && !out[0].IsNil() {
		return nil, out[0].Interface().(error)
	}
	return nil, nil
}

// dieOfSignal ends the process by sig with the default disposition, so
// that the parent sees it killed by sig (exit code -sig).
func dieOfSignal(sig syscall.Signal) {
	signal.Reset(sig)
	unix.Tgkill(os.Getpid(), unix.Gettid(), sig)
	// The signal is delivered on return from tgkill; in case it was
	// blocked on this thread, send it to the process as well.
	unix.Kill(os.Getpid(), sig)
	time.Sleep(time.Second)
	os.Exit(128 + int(sig))
}

// parseBootstrap decodes and checks a bootstrap message against the size
// of the inherited-file table.
func parseBootstrap(b []byte, nfiles int) (*pb.Bootstrap, error) {
	if len(b) > maxBootstrap {
		return nil, fmt.Errorf("process: bootstrap message of %d bytes is over the limit", len(b))
	}
	boot, err := decodeBootstrap(b)
	if err != nil {
		return nil, err
	}
	if boot.Function == "" {
		return nil, errors.New("process: bad bootstrap message: no function")
	}
	if int(boot.Status) >= nfiles {
		return nil, fmt.Errorf("process: bad bootstrap message: status index %d, %d files", boot.Status, nfiles)
	}
	used := map[uint32]bool{boot.Status: true}
	check := func(h *pb.HandleRef) error {
		if h == nil {
			return errors.New("process: bad bootstrap message: empty handle")
		}
		for _, x := range h.Files {
			if int(x) >= nfiles || used[x] {
				return fmt.Errorf("process: bad bootstrap message: file index %d (of %d) out of range or used twice", x, nfiles)
			}
			used[x] = true
		}
		return nil
	}
	for i, a := range boot.Args {
		switch k := a.GetKind().(type) {
		case *pb.Argument_Handle:
			if err := check(k.Handle); err != nil {
				return nil, err
			}
		case *pb.Argument_Value:
			if k.Value == nil {
				return nil, fmt.Errorf("process: bad bootstrap message: argument %d has no value", i)
			}
		default:
			return nil, fmt.Errorf("process: bad bootstrap message: argument %d is empty", i)
		}
	}
	for _, in := range boot.Inherited {
		if err := check(in.GetHandle()); err != nil {
			return nil, err
		}
	}
	return boot, nil
}

// decodeArgs rebuilds the function's arguments: values are decoded, handles
// are attached to the files (which they then own).
func decodeArgs(f *Func, args []*pb.Argument, table []*os.File) ([]reflect.Value, error) {
	if len(args) != len(f.params) {
		return nil, fmt.Errorf("%w: %s takes %d arguments, the bootstrap has %d", ErrBadArgs, f, len(f.params), len(args))
	}
	out := make([]reflect.Value, len(args))
	for i, a := range args {
		p := f.params[i]
		switch k := a.Kind.(type) {
		case *pb.Argument_Value:
			v, err := decodeValue(p.t, k.Value)
			if err != nil {
				return nil, fmt.Errorf("process: %s: argument %d: %w", f.name, i, err)
			}
			out[i] = v
		case *pb.Argument_Handle:
			if !p.handle {
				return nil, fmt.Errorf("%w: %s: argument %d is a handle (%s) but the parameter is a %v", ErrBadArgs, f.name, i, k.Handle.Kind, p.t)
			}
			files, err := plumbing.TakeFiles(table, k.Handle.Files)
			if err != nil {
				return nil, fmt.Errorf("process: %s: argument %d: %w", f.name, i, err)
			}
			v := reflect.New(p.t.Elem())
			if err := v.Interface().(attacher).MultiprocAttach(files, k.Handle.Desc); err != nil {
				return nil, fmt.Errorf("process: %s: argument %d (%v): attach: %w", f.name, i, p.t, err)
			}
			out[i] = v
		}
	}
	return out, nil
}

var protoMessageType = reflect.TypeFor[proto.Message]()

// decodeValue decodes one plain argument of type t, by the rule the
// parent's codec applied (ipc.DefaultCodec).
func decodeValue(t reflect.Type, v *pb.Value) (reflect.Value, error) {
	switch v.Encoding {
	case pb.Encoding_ENCODING_RAW:
		if t.Kind() != reflect.Slice || t.Elem().Kind() != reflect.Uint8 {
			return reflect.Value{}, fmt.Errorf("raw bytes for a %v parameter", t)
		}
		return reflect.ValueOf(v.Data).Convert(t), nil
	case pb.Encoding_ENCODING_PROTO:
		if t.Kind() != reflect.Pointer || !t.Implements(protoMessageType) {
			return reflect.Value{}, fmt.Errorf("a protobuf message for a %v parameter", t)
		}
		m := reflect.New(t.Elem())
		if err := proto.Unmarshal(v.Data, m.Interface().(proto.Message)); err != nil {
			return reflect.Value{}, fmt.Errorf("decode %v: %w", t, err)
		}
		return m, nil
	case pb.Encoding_ENCODING_GOB:
		pv := reflect.New(t)
		if err := valenc.GobUnmarshal(v.Data, pv.Interface()); err != nil {
			return reflect.Value{}, fmt.Errorf("decode %v: %w", t, err)
		}
		return pv.Elem(), nil
	}
	return reflect.Value{}, fmt.Errorf("unknown encoding %v", v.Encoding)
}

// ---------------------------------------------------------------- status

// statusConn is the child's end of the status socket: frames out, and EOF
// in when the parent is gone.
type statusConn struct {
	fd   int // -1 if none
	file *os.File
	raw  syscall.RawConn
	mu   sync.Mutex
}

// openStatus takes files[i] as the status socket: a non-blocking,
// close-on-exec duplicate in the runtime poller. A missing or unusable
// file gives a statusConn that reports nothing.
func openStatus(files []*os.File, i int) *statusConn {
	c := &statusConn{fd: -1}
	if i < 0 || i >= len(files) || files[i] == nil {
		return c
	}
	f := files[i]
	defer f.Close()
	fd, err := rawFD(f)
	if err != nil {
		return c
	}
	nfd, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return c
	}
	var st unix.Stat_t
	if unix.Fstat(nfd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		unix.Close(nfd)
		return c
	}
	unix.SetNonblock(nfd, true)
	c.file = os.NewFile(uintptr(nfd), "multiproc-status")
	raw, err := c.file.SyscallConn()
	if err != nil {
		c.file.Close()
		return c
	}
	c.fd, c.raw = nfd, raw
	return c
}

func (c *statusConn) startupError(msg string) {
	if c.fd < 0 {
		childFatal(errors.New(msg))
	}
	c.send(&pb.ChildStatus{StartupError: truncate(msg)})
}

// send writes one frame; errors (a parent that is gone) are ignored.
func (c *statusConn) send(st *pb.ChildStatus) {
	if c.fd < 0 {
		return
	}
	body, err := proto.Marshal(st)
	if err != nil {
		return
	}
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	c.write(append(buf, body...))
}

// write writes a whole frame; errors (a parent that is gone) are ignored.
func (c *statusConn) write(buf []byte) {
	if c.fd < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(buf) > 0 {
		var n int
		var werr error
		err := c.raw.Write(func(fd uintptr) bool {
			n, werr = unix.Write(int(fd), buf)
			return werr != unix.EAGAIN
		})
		if err != nil || werr != nil || n <= 0 {
			return
		}
		buf = buf[n:]
	}
}

// waitParentGone blocks until the parent's end of the socket is closed.
func (c *statusConn) waitParentGone() {
	if c.fd < 0 {
		select {} // no lifeline: nothing will ever tell
	}
	var b [64]byte
	for {
		var n int
		var rerr error
		err := c.raw.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), b[:])
			return rerr != unix.EAGAIN
		})
		if err != nil || rerr != nil || n == 0 {
			return
		}
	}
}

// lifelineBroken polls the status socket without blocking: readable means
// EOF, since the parent never writes on it.
func lifelineBroken(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0 && fds[0].Revents != 0
	}
}
