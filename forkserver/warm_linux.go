// SPDX-License-Identifier: Apache-2.0

package forkserver

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/ipc"
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
	f := os.NewFile(uintptr(fd), "forkserver-control")
	conn, err := ipc.NewConn(f, f, ipc.MaxFrameSize(maxRequest))
	if err != nil {
		warmFatal(fmt.Errorf("forkserver: warm process: control socket: %w", err))
	}
	ctx := context.Background()
	prewarm()
	ready, _ := proto.Marshal(&fspb.Ready{Pid: int64(os.Getpid())})
	if err := conn.SendBytes(ctx, ready); err != nil {
		os.Exit(0) // the program is gone: nothing to do
	}
	payload, files, err := conn.RecvFiles(ctx)
	if err != nil {
		// EOF: the program closed its Starter or exited. Nothing ran.
		os.Exit(0)
	}
	req, err := parseRequest(payload, len(files))
	if err != nil {
		warmFatal(err)
	}
	for uint32(len(files)) < req.Files {
		_, more, err := conn.RecvFiles(ctx)
		if err != nil {
			warmFatal(fmt.Errorf("forkserver: warm process: %d of %d files received: %w", len(files), req.Files, err))
		}
		files = append(files, more...)
	}
	for _, f := range files[req.Files:] {
		f.Close() // more than announced: not the child's
	}
	files = files[:req.Files]
	// Closing a Conn takes the poller's locks: tens of microseconds that
	// the child need not wait for (the socket is close-on-exec).
	go conn.Close()
	// stdio, as Spawn gives it: the request's files on 0, 1 and 2, in
	// blocking mode.
	for i := range 3 {
		if err := dupTo(files[i], i); err != nil {
			warmFatal(fmt.Errorf("forkserver: warm process: stdio %d: %w", i, err))
		}
		files[i].Close()
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
	starter.RunChild(req.Bootstrap, files[3:])
}

// parseRequest decodes and checks a Request frame that came with nfiles
// files.
func parseRequest(payload []byte, nfiles int) (*fspb.Request, error) {
	req := new(fspb.Request)
	if err := proto.Unmarshal(payload, req); err != nil {
		return nil, fmt.Errorf("forkserver: warm process: bad request (%d bytes): %w", len(payload), err)
	}
	switch {
	case req.Files < 3:
		return nil, fmt.Errorf("forkserver: warm process: bad request: %d files, want stdio at least", req.Files)
	case req.Files > maxFiles:
		return nil, fmt.Errorf("forkserver: warm process: bad request: %d files, over %d", req.Files, maxFiles)
	case nfiles > int(req.Files):
		return nil, fmt.Errorf("forkserver: warm process: bad request: %d files announced, %d received", req.Files, nfiles)
	case len(req.Bootstrap) == 0:
		return nil, fmt.Errorf("forkserver: warm process: bad request: no bootstrap message")
	}
	return req, nil
}

// maxFiles bounds the files of one request (process's own bound on an
// inherited-file table is 4096), so that a bad request cannot make a warm
// process wait for files that never come without end.
const maxFiles = 3 + 4096

// dupTo puts f on fd to (dup3, so not close-on-exec: a grandchild exec'd
// by the child inherits its stdio) and makes it blocking.
func dupTo(f *os.File, to int) error {
	fd := rawFD(f)
	if fd == badFD {
		return fmt.Errorf("bad file")
	}
	for {
		err := unix.Dup3(int(fd), to, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("dup3", err)
		}
		break
	}
	return unix.SetNonblock(to, false)
}

func warmFatal(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// prewarm runs, while the warm process waits, the first-use
// initialisation of what the hand-over and starter.RunChild use: the
// protobuf coder of Request, built lazily on first use (30 to 100
// microseconds, measured), and the child's SIGTERM watcher
// (starter.PrepareChild), whose signal.Notify would otherwise cost the
// started child about 70 microseconds.
func prewarm() {
	b, err := proto.Marshal(&fspb.Request{Bootstrap: []byte{1}, Files: 3, Daemon: true, ReplaceEnv: true, Env: []string{"A=B"}, Name: "x"})
	if err == nil {
		proto.Unmarshal(b, new(fspb.Request))
	}
	starter.PrepareChild()
}
