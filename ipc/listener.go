// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultHandshakeTimeout bounds the handshakes (TLS, authkey) of Accept
// and Dial unless HandshakeTimeout says otherwise, so that a peer that
// connects and stays silent cannot hold Accept forever.
const DefaultHandshakeTimeout = 20 * time.Second

// A ListenOption configures Listen and Dial.
type ListenOption func(*listenOptions)

type listenOptions struct {
	auth      bool
	authkey   []byte
	strict    bool
	timeout   time.Duration
	conn      []Option
	peerCreds bool
	tls       *tls.Config // WithTLS
}

// WithAuthkey makes Accept and Dial run CPython's HMAC challenge handshake
// with key (see PROTOCOL.md). Both sides must use the same key; a wrong key
// fails on both sides with ErrAuthentication. An empty key still
// authenticates (CPython 3.13's behaviour). Without this option no
// handshake runs, as with CPython's authkey=None.
func WithAuthkey(key []byte) ListenOption {
	k := append([]byte{}, key...)
	return func(o *listenOptions) { o.auth, o.authkey = true, k }
}

// Strict makes the handshake refuse legacy HMAC-MD5 answers, which CPython
// 3.11 and older send: only {digest}-prefixed answers (CPython 3.12+) pass.
func Strict() ListenOption { return func(o *listenOptions) { o.strict = true } }

// HandshakeTimeout bounds the handshakes of a new connection, the TLS one
// (WithTLS) and the authkey one together (DefaultHandshakeTimeout by
// default; d <= 0 means no bound beyond the caller's context).
func HandshakeTimeout(d time.Duration) ListenOption {
	return func(o *listenOptions) { o.timeout = d }
}

// WithConnOptions sets options (MaxFrameSize, WithCodec) for the Conns that
// Accept and Dial return.
func WithConnOptions(opts ...Option) ListenOption {
	return func(o *listenOptions) { o.conn = append(o.conn, opts...) }
}

// SameUser makes Accept on a unix socket refuse peers whose user id
// (SO_PEERCRED) differs from this process's. It is an extra check on top of
// the socket file's permissions and the authkey; Listeners on TCP ignore it.
func SameUser() ListenOption { return func(o *listenOptions) { o.peerCreds = true } }

func makeListenOptions(opts []ListenOption) listenOptions {
	o := listenOptions{timeout: DefaultHandshakeTimeout}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Listener accepts framed connections on a unix socket (a path or a Linux
// abstract name) or a TCP address, like CPython's
// multiprocessing.connection.Listener. Its methods are safe for concurrent
// use.
type Listener struct {
	l      net.Listener
	opts   listenOptions
	tmpDir string // made by Listen for an empty unix address; removed by Close

	mu     sync.Mutex
	closed bool
}

// Listen listens on address. network is "unix" (a socket path, or an
// abstract name written "@name" as Go does or "\x00name" as CPython does)
// or "tcp" ("host:port"; port 0 picks a free port, see Addr). An empty
// address picks one, as CPython's Listener() does: a socket in a new
// private temporary directory (removed by Close) or a free port on
// 127.0.0.1. Listening on an address that is in use fails, even a unix path
// whose listener is gone (the stale socket file must be removed first).
// With WithTLS (tcp only), Accept runs a TLS handshake on every connection
// first.
func Listen(network, address string, opts ...ListenOption) (*Listener, error) {
	o := makeListenOptions(opts)
	if err := o.checkTLS("Listen", network, true); err != nil {
		return nil, err
	}
	var l net.Listener
	var err error
	switch network {
	case "unix":
		tmpDir := ""
		if address == "" {
			// Like CPython's arbitrary_address: a fresh private directory.
			if tmpDir, err = os.MkdirTemp("", "mp-"); err != nil {
				return nil, fmt.Errorf("ipc: %w", err)
			}
			address = filepath.Join(tmpDir, "listener")
		}
		ul, lerr := net.ListenUnix("unix", &net.UnixAddr{Name: goUnixName(address), Net: "unix"})
		if lerr != nil {
			if tmpDir != "" {
				os.RemoveAll(tmpDir)
			}
			return nil, fmt.Errorf("ipc: %w", lerr)
		}
		return &Listener{l: ul, opts: o, tmpDir: tmpDir}, nil
	case "tcp", "tcp4", "tcp6":
		if address == "" {
			address = "127.0.0.1:0"
		}
		l, err = net.Listen(network, address)
		if err != nil {
			return nil, fmt.Errorf("ipc: %w", err)
		}
	default:
		return nil, fmt.Errorf("ipc: Listen: unsupported network %q (want unix or tcp)", network)
	}
	return &Listener{l: l, opts: o}, nil
}

// goUnixName writes CPython's "\x00name" abstract form the way Go's net
// package spells it ("@name").
func goUnixName(a string) string {
	if strings.HasPrefix(a, "\x00") {
		return "@" + a[1:]
	}
	return a
}

// Addr returns the address the Listener listens on (with the port chosen
// for "tcp" address ":0"). An abstract unix name is shown as "@name".
func (l *Listener) Addr() net.Addr { return l.l.Addr() }

// Close stops listening and, for a unix path the Listener created, removes
// the socket file. It is idempotent. Accept calls blocked in other
// goroutines return ErrClosed.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	err := l.l.Close()
	if l.tmpDir != "" {
		os.RemoveAll(l.tmpDir)
	}
	return err
}

type deadliner interface{ SetDeadline(time.Time) error }

// Accept waits for a connection and, with WithAuthkey, runs the handshake
// on it: the challenge to the client first, then the client's challenge
// (CPython's order). A failed handshake closes the connection and returns
// the error (wrapping ErrAuthentication for a wrong key), as CPython's
// accept() raises; the Listener stays usable.
func (l *Listener) Accept(ctx context.Context) (*Conn, error) {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var nc net.Conn
	var err error
	if ctx.Done() != nil {
		d := l.l.(deadliner)
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			d.SetDeadline(pastDeadline)
			close(fired)
		})
		for {
			nc, err = l.l.Accept()
			// Another Accept's cancellation moves the shared deadline
			// too: retry unless it was ours.
			if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
				break
			}
			runtime.Gosched()
		}
		if !stop() {
			<-fired
			d.SetDeadline(time.Time{})
			if err != nil {
				err = ctx.Err()
			}
		}
	} else {
		for {
			nc, err = l.l.Accept()
			if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			runtime.Gosched()
		}
	}
	if err != nil {
		if nc != nil {
			nc.Close()
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, ErrClosed
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return nil, fmt.Errorf("ipc: accept: %w", err)
	}
	if l.opts.peerCreds {
		if err := checkPeerUser(nc); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return connect(ctx, nc, l.opts, true)
}

// Dial connects to a Listener (or a CPython
// multiprocessing.connection.Listener) at address on network ("unix" or
// "tcp", as for Listen) and, with WithAuthkey, runs the handshake: it
// answers the server's challenge first, then challenges the server. With
// WithTLS (tcp only), a TLS handshake comes first and everything else runs
// inside TLS.
func Dial(ctx context.Context, network, address string, opts ...ListenOption) (*Conn, error) {
	o := makeListenOptions(opts)
	if err := o.checkTLS("Dial", network, false); err != nil {
		return nil, err
	}
	if o.tls != nil {
		o.tls = clientTLS(o.tls, address)
	}
	switch network {
	case "unix":
		address = goUnixName(address)
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("ipc: Dial: unsupported network %q (want unix or tcp)", network)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("ipc: %w", err)
	}
	return connect(ctx, nc, o, false)
}

// connect wraps a fresh socket in a Conn and runs the handshakes: TLS
// first with WithTLS, then the authkey one with WithAuthkey, both within
// one HandshakeTimeout.
func connect(ctx context.Context, nc net.Conn, o listenOptions, server bool) (*Conn, error) {
	hctx := ctx
	if o.timeout > 0 && (o.auth || o.tls != nil) {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	var t transport
	if o.tls != nil {
		e, err := tlsHandshake(hctx, nc, o.tls, server)
		if err != nil {
			return nil, tlsError(ctx, hctx, nc.RemoteAddr(), err)
		}
		t = e
	} else {
		var ok bool
		if t, ok = nc.(transport); !ok {
			nc.Close()
			return nil, ErrNotSocket
		}
		if uc, ok := nc.(*net.UnixConn); ok {
			uc.SetWriteBuffer(sockBuf) // best effort, as for Pipe's socketpairs
		}
	}
	copts := o.conn
	if o.tls != nil {
		// The Conn's data comes from, and goes to, the pump goroutines of
		// this process: a receiver blocked in poll(2) would hold a P they
		// need until sysmon takes it back (tens of microseconds or more).
		copts = append(copts[:len(copts):len(copts)], WaitInNetpoller())
	}
	c, err := newConn(t, t, false, false, copts)
	if err != nil {
		t.Close()
		return nil, err
	}
	if !o.auth {
		return c, nil
	}
	if server {
		err = DeliverChallenge(hctx, c, o.authkey, o.strict)
		if err == nil {
			err = AnswerChallenge(hctx, c, o.authkey)
		}
	} else {
		err = AnswerChallenge(hctx, c, o.authkey)
		if err == nil {
			err = DeliverChallenge(hctx, c, o.authkey, o.strict)
		}
	}
	if err != nil {
		c.Close()
		if ctx.Err() == nil && hctx.Err() != nil {
			return nil, fmt.Errorf("ipc: authkey handshake timed out: %w", hctx.Err())
		}
		if e, ok := t.(*tlsEnd); ok && e.readErr() != nil {
			// The TLS peer ended the session (e.g. it refused this
			// side's certificate): say why, not just "EOF".
			return nil, fmt.Errorf("%w (TLS: %w)", err, e.readErr())
		}
		return nil, err
	}
	return c, nil
}

// checkPeerUser refuses a unix-socket peer running as another user.
func checkPeerUser(nc net.Conn) error {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("ipc: SO_PEERCRED: %w", cerr)
	}
	if int(cred.Uid) != unix.Getuid() {
		return fmt.Errorf("%w: peer runs as uid %d", ErrAuthentication, cred.Uid)
	}
	return nil
}
