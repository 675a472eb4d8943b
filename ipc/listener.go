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
	"strings"
	"sync"
	"syscall"
	"time"
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
	tls       *tls.Config // TLS
	maxHS     int         // MaxHandshakes
	maxHSPeer int
}

// Authkey makes Accept and Dial run CPython's HMAC challenge handshake
// with key (see PROTOCOL.md). Both sides must use the same key; a wrong key
// fails on both sides with ErrAuthentication. An empty key still
// authenticates (CPython 3.13's behaviour). Without this option no
// handshake runs, as with CPython's authkey=None.
func Authkey(key []byte) ListenOption {
	k := append([]byte{}, key...)
	return func(o *listenOptions) { o.auth, o.authkey = true, k }
}

// Strict makes the handshake refuse legacy HMAC-MD5 answers, which CPython
// 3.11 and older send: only {digest}-prefixed answers (CPython 3.12+) pass.
func Strict() ListenOption { return func(o *listenOptions) { o.strict = true } }

// HandshakeTimeout bounds the handshakes of a new connection, the TLS one
// (TLS) and the authkey one together (DefaultHandshakeTimeout by
// default; d <= 0 means no bound beyond the caller's context).
func HandshakeTimeout(d time.Duration) ListenOption {
	return func(o *listenOptions) { o.timeout = d }
}

// ConnOptions sets options (MaxFrameSize, UseCodec) for the Conns that
// Accept and Dial return.
func ConnOptions(opts ...Option) ListenOption {
	return func(o *listenOptions) { o.conn = append(o.conn, opts...) }
}

// SameUser makes Accept on a unix socket refuse peers whose user id
// (SO_PEERCRED) differs from this process's. It is an extra check on top of
// the socket file's permissions and the authkey; Listeners on TCP ignore it.
func SameUser() ListenOption { return func(o *listenOptions) { o.peerCreds = true } }

func makeListenOptions(opts []ListenOption) listenOptions {
	o := listenOptions{timeout: DefaultHandshakeTimeout, maxHS: DefaultMaxHandshakes, maxHSPeer: DefaultMaxHandshakesPerPeer}
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
	hs     handshakes // the connections in the handshake (accept.go)
}

// Listen listens on address. network is "unix" (a socket path, or an
// abstract name written "@name" as Go does or "\x00name" as CPython does)
// or "tcp" ("host:port"; port 0 picks a free port, see Addr). An empty
// address picks one, as CPython's Listener() does: a socket in a new
// private temporary directory (removed by Close) or a free port on
// 127.0.0.1. Listening on an address that is in use fails, even a unix path
// whose listener is gone (the stale socket file must be removed first).
// With TLS (tcp only), Accept runs a TLS handshake on every connection
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
		return newListener(ul, o, tmpDir), nil
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
	return newListener(l, o, ""), nil
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
// goroutines return ErrClosed. Connections in the handshake, or that
// passed it and were not taken by Accept, are closed, and the Listener's
// goroutines have ended when Close returns.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	err := l.l.Close()
	l.closeHandshakes()
	if l.tmpDir != "" {
		os.RemoveAll(l.tmpDir)
	}
	return err
}

// Dial connects to a Listener (or a CPython
// multiprocessing.connection.Listener) at address on network ("unix" or
// "tcp", as for Listen) and, with Authkey, runs the handshake: it
// answers the server's challenge first, then challenges the server. With
// TLS (tcp only), a TLS handshake comes first and everything else runs
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
	return connect(ctx, nc, o, false, address)
}

// connect wraps a fresh socket in a Conn and runs the handshakes: TLS
// first with TLS, then the authkey one with Authkey, both within
// one HandshakeTimeout. On the server side (Accept) every error is a
// *HandshakeError naming peer; on the client side a failed TLS handshake
// is one too.
func connect(ctx context.Context, nc net.Conn, o listenOptions, server bool, peer string) (*Conn, error) {
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
			return nil, tlsError(ctx, hctx, peer, err)
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
	if err == nil {
		return c, nil
	}
	c.Close()
	switch {
	case ctx.Err() == nil && hctx.Err() != nil:
		err = fmt.Errorf("ipc: authkey handshake timed out: %w", hctx.Err())
	case errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET):
		// A send to a peer that left: what the peer did, not a bare
		// "broken pipe".
		err = fmt.Errorf("%w: the peer hung up (%w)", ErrAuthentication, err)
	default:
		if e, ok := t.(*tlsEnd); ok && e.readErr() != nil {
			// The TLS peer ended the session (e.g. it refused this
			// side's certificate): say why, not just "EOF".
			err = fmt.Errorf("%w (TLS: %w)", err, e.readErr())
		}
	}
	if server {
		return nil, &HandshakeError{Peer: peer, Err: err}
	}
	return nil, err
}
