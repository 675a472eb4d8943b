// SPDX-License-Identifier: Apache-2.0

package forkserver

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/process/starter"
	fspb "github.com/multiproc/multiproc/proto/forkserver/v1"
)

// The warm side. process.Init, called first in main after every package
// is initialised, finds envWarm set and calls warmMain, which waits for
// the request and becomes the child.
func init() { starter.RegisterInitHook(envWarm, warmMain) }

func warmMain(v string) {
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		warmFatal(fmt.Errorf("forkserver: bad %s=%q", envWarm, v))
	}
	starter.CloseStrayFDs(fd)
	// The control socket stays a plain blocking descriptor, outside the
	// runtime's poller: the wait for the request is one recvmsg(2) on a
	// thread of its own, and closing it one close(2), where a Conn's Close
	// takes the poller's locks.
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, false); err != nil {
		warmFatal(fmt.Errorf("forkserver: warm process: control socket: %w", err))
	}
	prewarm()
	ready, _ := proto.Marshal(&fspb.Ready{Pid: int64(os.Getpid())})
	if err := writeFrame(fd, ready); err != nil {
		os.Exit(0) // the program is gone: nothing to do
	}
	ctl := newControlReader(fd)
	// Locked, the goroutine wakes from recvmsg on the thread that waited,
	// with nothing else to schedule first.
	runtime.LockOSThread()
	payload, err := ctl.frame(maxRequest)
	if err != nil {
		if errors.Is(err, io.EOF) {
			// The program closed its Starter or exited. Nothing ran.
			os.Exit(0)
		}
		warmFatal(fmt.Errorf("forkserver: warm process: request: %w", err))
	}
	req, err := parseRequest(payload, len(ctl.fds))
	if err != nil {
		warmFatal(err)
	}
	for uint32(len(ctl.fds)) < req.Files {
		if _, err := ctl.frame(0); err != nil {
			warmFatal(fmt.Errorf("forkserver: warm process: %d of %d files received: %w", len(ctl.fds), req.Files, err))
		}
	}
	runtime.UnlockOSThread()
	unix.Close(fd)
	fds := ctl.fds
	for _, x := range fds[req.Files:] {
		unix.Close(x) // more than announced: not the child's
	}
	fds = fds[:req.Files]
	// stdio, as Spawn gives it: the request's files on 0, 1 and 2, in
	// blocking mode, except those this process keeps (it was started with
	// them: /dev/null, the program's stdout and stderr).
	for i := range 3 {
		if req.KeepStdio&(1<<i) != 0 {
			continue
		}
		if err := dupTo(fds[0], i); err != nil {
			warmFatal(fmt.Errorf("forkserver: warm process: stdio %d: %w", i, err))
		}
		unix.Close(fds[0])
		fds = fds[1:]
	}
	files := make([]*os.File, len(fds))
	for i, x := range fds {
		files[i] = os.NewFile(uintptr(x), "inherited-"+strconv.Itoa(i))
	}
	if req.ReplaceEnv {
		os.Clearenv()
		for _, kv := range req.Env {
			if k, v, ok := strings.Cut(kv, "="); ok {
				os.Setenv(k, v)
			}
		}
	}
	// A daemon gets Spawn's death signal, SIGTERM, as a second line of
	// defence; the lifeline in the bootstrap message (the status socket)
	// is the first, and covers a parent that died before this point.
	if req.Daemon {
		unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGTERM), 0, 0, 0)
	}
	starter.RunChild(req.Bootstrap, files)
}

// parseRequest decodes and checks a Request frame that came with nfiles
// files.
func parseRequest(payload []byte, nfiles int) (*fspb.Request, error) {
	req, err := decodeRequest(payload)
	if err != nil {
		return nil, fmt.Errorf("forkserver: warm process: bad request (%d bytes): %w", len(payload), err)
	}
	switch {
	case req.KeepStdio > 7:
		return nil, fmt.Errorf("forkserver: warm process: bad request: keep_stdio %#x", req.KeepStdio)
	case req.Files < stdioPassed(req.KeepStdio):
		return nil, fmt.Errorf("forkserver: warm process: bad request: %d files, want the %d stdio files at least", req.Files, stdioPassed(req.KeepStdio))
	case req.Files > maxFiles:
		return nil, fmt.Errorf("forkserver: warm process: bad request: %d files, over %d", req.Files, maxFiles)
	case nfiles > int(req.Files):
		return nil, fmt.Errorf("forkserver: warm process: bad request: %d files announced, %d received", req.Files, nfiles)
	case len(req.Bootstrap) == 0:
		return nil, fmt.Errorf("forkserver: warm process: bad request: no bootstrap message")
	}
	return req, nil
}

// stdioPassed is the number of stdio files a request with keep_stdio keep
// passes.
func stdioPassed(keep uint32) uint32 {
	return 3 - uint32(bits.OnesCount32(keep&7))
}

// maxFiles bounds the files of one request (process's own bound on an
// inherited-file table is 4096), so that a bad request cannot make a warm
// process wait for files that never come without end.
const maxFiles = 3 + 4096

// dupTo puts fd on fd to (dup3, so not close-on-exec: a grandchild exec'd
// by the child inherits its stdio) and makes it blocking.
func dupTo(fd, to int) error {
	for {
		err := unix.Dup3(fd, to, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("dup3", err)
		}
		break
	}
	fl, err := unix.FcntlInt(uintptr(to), unix.F_GETFL, 0)
	if err == nil && fl&unix.O_NONBLOCK != 0 {
		_, err = unix.FcntlInt(uintptr(to), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	}
	if err != nil {
		return os.NewSyscallError("fcntl", err)
	}
	return nil
}

func warmFatal(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// prewarm runs, while the warm process waits, the first use of what the
// hand-over and starter.RunChild use: the request's decoder (so that its
// code is mapped before the request comes), and the child's SIGTERM
// watcher (starter.PrepareChild), whose signal.Notify would otherwise
// cost the started child about 70 microseconds.
func prewarm() {
	decodeRequest(appendRequest(nil, &fspb.Request{Bootstrap: []byte{1}, Files: 3, Daemon: true, ReplaceEnv: true, Env: []string{"A=B"}, Name: "x"}))
	starter.PrepareChild()
}
