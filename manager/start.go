// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// serverFunc is the server process that Start spawns.
var serverFunc = process.Register("multiproc.manager.server", runServerProcess)

// envOneP tells a server process that Start asked it to serve on one P
// (the program had no GOMAXPROCS in its environment).
const envOneP = "MULTIPROC_MANAGER_ONE_P"

var initializers struct {
	sync.RWMutex
	m map[string]func(ctx context.Context) error
}

// RegisterInitializer registers a function that a server process started
// by Start runs before it serves, when Start is given Initializer(name)
// (CPython's start(initializer)). Register at package level, so that the
// server process (the same binary, re-executed) has it too. It panics if
// name is taken, and returns name.
func RegisterInitializer(name string, fn func(ctx context.Context) error) string {
	initializers.Lock()
	defer initializers.Unlock()
	if initializers.m == nil {
		initializers.m = map[string]func(context.Context) error{}
	}
	if _, dup := initializers.m[name]; dup || name == "" || fn == nil {
		panic(fmt.Sprintf("manager: RegisterInitializer(%q): empty, nil or already registered", name))
	}
	initializers.m[name] = fn
	return name
}

// Initializer makes Start's server process run the initializer
// registered under name before it serves. An error from it, or an unknown
// name, makes Start fail.
func Initializer(name string) Option {
	return func(o *options) { o.initializer = name }
}

// Manager is a server process started by Start with a Client connected to
// it (CPython's SyncManager after start()). The embedded Client's methods
// create and reach shared objects; proxies made through it can be passed
// to other processes.
type Manager struct {
	*Client
	proc *process.Process

	mu       sync.Mutex
	shutdown bool
	err      error
}

// Start spawns a manager server process (through the process package, so
// the program must call process.Init first in main) and connects to it.
// By default the server listens on a unix socket in a private temporary
// directory with a fresh random authkey; Address and Authkey
// choose others (e.g. "tcp", "127.0.0.1:0" for remote clients), and
// ServerTLS makes the server take only TLS connections.
//
// The server process is a daemon: it dies with this process, however this
// process ends. Shutdown (or Close) stops it.
//
// Unless GOMAXPROCS is set in the environment, the server process runs
// with GOMAXPROCS=1 while it serves only this process's calls one at a
// time (the fastest way to answer them), and with the default from the
// first accepted connection or the first concurrent calls on.
func Start(ctx context.Context, opts ...Option) (*Manager, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	if o.network == "" {
		o.network = "unix"
	}
	if o.tls != nil {
		return nil, errStartTLS
	}
	if o.serverTLS != "" {
		if lookupServerTLS(o.serverTLS) == nil {
			return nil, fmt.Errorf("manager: ServerTLS(%q): no function registered under that name with RegisterServerTLS", o.serverTLS)
		}
		if o.network != "tcp" && o.network != "tcp4" && o.network != "tcp6" {
			return nil, fmt.Errorf("manager: ServerTLS needs a tcp address (Address(\"tcp\", ...)), not %q", o.network)
		}
	}
	if !o.hasAuthkey {
		o.authkey = make([]byte, 32)
		rand.Read(o.authkey)
	}
	cfg, err := proto.Marshal(&pb.StartConfig{Network: o.network, Address: o.address, Authkey: o.authkey,
		Initializer: o.initializer, MaxFrame: o.maxFrame, MaxObjects: int64(o.maxObjects), MaxNames: int64(o.maxNames), ServerTls: o.serverTLS,
		MaxCallsConn: int64(o.maxCallsConn), MaxCalls: int64(o.maxCalls),
		MaxCallBytesConn: o.maxCallBytesConn, MaxCallBytes: o.maxCallBytes})
	if err != nil {
		return nil, err
	}
	mine, theirs, err := ipc.Pipe(true, ipc.MaxFrameSize(o.maxFrame))
	if err != nil {
		return nil, err
	}
	defer func() {
		if mine != nil {
			mine.Close()
		}
	}()
	p := &process.Process{Func: serverFunc, Args: []any{theirs, cfg}, Daemon: true, Name: "Manager",
		Logger: o.log, TermGrace: -1, Starter: o.starter}
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		// The server starts on one P (see runServerProcess): asked for in
		// its environment, a spawned server's runtime starts so, where a
		// runtime.GOMAXPROCS call once running stops the world (0.3 ms
		// measured). With an initializer, which may want every CPU, the
		// server switches after it instead.
		p.Env = []string{envOneP + "=1"}
		if o.initializer == "" {
			p.Env = append(p.Env, "GOMAXPROCS=1")
		}
	}
	err = p.Start(ctx)
	theirs.Close()
	if err != nil {
		return nil, fmt.Errorf("manager: start server process: %w", err)
	}
	fail := func(err error) (*Manager, error) {
		p.Kill()
		p.Wait()
		return nil, err
	}
	b, err := mine.RecvBytes(ctx)
	if err != nil {
		if jerr := p.Join(context.Background()); jerr != nil {
			err = jerr
		}
		p.Close()
		return nil, fmt.Errorf("manager: server process did not start: %w", err)
	}
	reply := new(pb.StartReply)
	if err := proto.Unmarshal(b, reply); err != nil {
		return fail(fmt.Errorf("manager: bad reply from the server process: %w", err))
	}
	if reply.Error != "" {
		return fail(fmt.Errorf("manager: server process: %s", reply.Error))
	}
	// The pipe that carried the reply becomes this client's connection:
	// the server serves it like an accepted one, with no dial and no
	// handshake (the pipe was never reachable by anyone else).
	c := NewClient(mine, Authkey(o.authkey), MaxFrameSize(o.maxFrame), Logger(o.log))
	c.network, c.address = reply.Network, reply.Address
	c.tls = o.serverTLS != ""
	c.serverEnded = func() error { return serverEnded(p) }
	mine = nil
	return &Manager{Client: c, proc: p}, nil
}

// serverEnded returns how the server process p ended, when it ended
// unexpectedly: an *process.ExitError, or nil. The connection is lost as
// the process exits, a moment before its exit can be reaped; the wait
// is bounded for a connection lost while the server lives on.
func serverEnded(p *process.Process) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var ee *process.ExitError
	if err := p.Join(ctx); errors.As(err, &ee) {
		return ee
	}
	return nil
}

// Pid returns the server process's pid.
func (m *Manager) Pid() int { return m.proc.Pid() }

// Process returns the server process.
func (m *Manager) Process() *process.Process { return m.proc }

// Shutdown asks the server to stop and waits for its process to exit,
// until ctx ends; then it terminates it and, past a grace of one second,
// kills it (CPython's shutdown with shutdown_timeout). It returns nil when
// the server exited cleanly or by SIGTERM. Shutdown is idempotent: later
// calls return the first result.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shutdown {
		return m.err
	}
	m.shutdown = true
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	m.Client.Shutdown(sctx) // the server may be gone already
	cancel()
	m.Client.Close()
	err := m.proc.Join(ctx)
	if err != nil && ctx.Err() != nil {
		m.proc.Terminate()
		gctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = m.proc.Join(gctx)
		cancel()
		if err != nil && gctx.Err() != nil {
			m.proc.Kill()
			err = m.proc.Join(context.Background())
		}
	}
	m.proc.Close()
	var ee *process.ExitError
	if errors.As(err, &ee) {
		if code, _ := m.proc.ExitCode(); code == -15 {
			err = nil
		}
	}
	m.err = err
	return err
}

// Close is Shutdown with a one-second bound on the clean exit.
func (m *Manager) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return m.Shutdown(ctx)
}

// runServerProcess is the body of the server process: listen, report the
// address, serve until Shutdown or until the parent goes away.
func runServerProcess(ctx context.Context, conn *ipc.Conn, cfgBytes []byte) error {
	signal.Ignore(os.Interrupt) // like CPython's manager server: ^C is for the parent
	handed := false
	defer func() {
		if !handed {
			conn.Close()
		}
	}()
	reply := func(r *pb.StartReply) error {
		b, _ := proto.Marshal(r)
		return conn.SendBytes(ctx, b)
	}
	cfg := new(pb.StartConfig)
	if err := proto.Unmarshal(cfgBytes, cfg); err != nil {
		reply(&pb.StartReply{Error: "bad configuration: " + err.Error()})
		return err
	}
	address := cfg.Address
	if cfg.Network == "unix" && address == "" {
		dir, err := os.MkdirTemp("", "multiproc-manager-")
		if err != nil {
			reply(&pb.StartReply{Error: err.Error()})
			return err
		}
		defer func() {
			// The listener unlinked its socket when it closed: rmdir
			// is one system call, where RemoveAll reads the directory
			// first (0.2 ms measured on the way to the server's exit).
			if os.Remove(dir) != nil {
				os.RemoveAll(dir)
			}
		}()
		address = filepath.Join(dir, "manager.sock")
	}
	opts := []Option{Authkey(cfg.Authkey), MaxFrameSize(cfg.MaxFrame), MaxObjects(int(cfg.MaxObjects)), MaxNames(int(cfg.MaxNames)),
		MaxCalls(int(cfg.MaxCallsConn), int(cfg.MaxCalls)), MaxCallBytes(cfg.MaxCallBytesConn, cfg.MaxCallBytes)}
	if cfg.ServerTls != "" {
		fn := lookupServerTLS(cfg.ServerTls)
		if fn == nil {
			err := fmt.Errorf("no server TLS configuration registered as %q (RegisterServerTLS must run at package level)", cfg.ServerTls)
			reply(&pb.StartReply{Error: err.Error()})
			return err
		}
		tlsCfg, err := fn()
		if err == nil && tlsCfg == nil {
			err = errors.New("the function returned no configuration")
		}
		if err != nil {
			reply(&pb.StartReply{Error: "server TLS configuration: " + err.Error()})
			return err
		}
		opts = append(opts, TLS(tlsCfg))
	}
	if cfg.Initializer != "" {
		initializers.RLock()
		fn := initializers.m[cfg.Initializer]
		initializers.RUnlock()
		if fn == nil {
			err := fmt.Errorf("no initializer registered as %q", cfg.Initializer)
			reply(&pb.StartReply{Error: err.Error()})
			return err
		}
		if err := fn(ctx); err != nil {
			reply(&pb.StartReply{Error: "initializer: " + err.Error()})
			return err
		}
	}
	// While the parent's pipe is its only connection, the server runs on
	// one P. With a second, idle P, the runtime keeps a thread asleep in
	// epoll_pwait whenever some goroutine waits in the netpoller (the
	// acceptors, the lifeline watcher), and that thread is woken by every
	// request and every answer on the pipe (edge events of a descriptor
	// it does not wait for): two extra context switches per call on a
	// server whose work is one goroutine. The default comes back for good
	// once parallelism may pay: a connection is accepted, or requests
	// come in batches (concurrent callers; throughput then matters more
	// than a lone call's latency, and a second P takes the garbage
	// collector's work off the serving one). A GOMAXPROCS set in the
	// environment is left alone.
	_, oneP := os.LookupEnv(envOneP)
	if oneP {
		// Set by Start when the program had no GOMAXPROCS of its own: a
		// GOMAXPROCS=1 that Start added must not reach what the server
		// starts. The runtime read it already, unless this process was
		// warm (forkserver) or an initializer ran first.
		if os.Getenv("GOMAXPROCS") == "1" {
			os.Unsetenv("GOMAXPROCS")
		}
		os.Unsetenv(envOneP)
		if runtime.GOMAXPROCS(0) != 1 {
			runtime.GOMAXPROCS(1)
		}
	}
	l, err := Listen(cfg.Network, address, opts...)
	if err != nil {
		reply(&pb.StartReply{Error: err.Error()})
		return err
	}
	srv := NewServer(opts...)
	if oneP {
		srv.wantProcs = sync.OnceFunc(func() { runtime.SetDefaultGOMAXPROCS() })
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()
	if err := reply(&pb.StartReply{Network: cfg.Network, Address: l.Addr().String()}); err != nil {
		srv.Close()
		<-served
		return err
	}
	// The parent's client talks over the same pipe from now on.
	handed = true
	go srv.ServeConn(context.Background(), conn)
	select {
	case <-srv.Done():
	case <-ctx.Done(): // the parent died, or terminated us
	}
	srv.Close()
	<-served
	return nil
}
