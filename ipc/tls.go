// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// TLS for Listen and Dial over TCP.
//
// A Conn reads and writes its descriptor directly (poll(2) waits woken by
// an eventfd, spinning reads, SCM_RIGHTS), so it cannot run on a
// *tls.Conn, which is an io.Reader/io.Writer without a descriptor of its
// own. Instead TLS ends in a small pump: the Conn runs on one end of a
// unix socketpair and two goroutines copy between the other end and the
// *tls.Conn. The Conn's read and write paths, its cancellation and its
// Wait support stay exactly what they are for every other transport;
// the price is one more hop through the socketpair (and a goroutine
// wake-up) each way, measured in manager's BenchmarkTLS.

// tlsFlushTimeout bounds how long Close waits for a peer that does not
// read to take what the Conn sent before Close (plus TLS's close_notify),
// as crypto/tls bounds its own close_notify. A variable for tests.
var tlsFlushTimeout = 5 * time.Second

// pump buffer sizes: a TLS record carries at most 16 KiB of plaintext, so
// one read of the tls.Conn returns no more; the other way a larger read
// lets tls.Conn fill whole records.
const (
	tlsReadBuf  = 16 << 10
	tlsWriteBuf = 64 << 10
)

// TLS makes Listen's Accept and Dial run a TLS handshake on each new
// TCP connection before anything else (before the authkey handshake of
// Authkey, which then runs inside TLS). For Listen, cfg is a server
// configuration: it must have a certificate (Certificates, GetCertificate
// or GetConfigForClient); set ClientAuth and ClientCAs to require client
// certificates. For Dial, cfg is a client configuration: RootCAs to trust
// the server's certificate (the system's roots when nil), Certificates for
// a client certificate; an empty ServerName is taken from the dialled
// address's host, as tls.Dial does. cfg is cloned, so later changes to it
// do not apply.
//
// HandshakeTimeout (DefaultHandshakeTimeout by default) and the context of
// Accept or Dial bound the TLS and the authkey handshakes together. A
// failed TLS handshake fails Accept or Dial with an error that starts
// "ipc: tls handshake with <peer address>" and wraps crypto/tls's error
// (or the context's). A peer that speaks TLS to a listener without it, or
// the other way round, fails at once when the plain side is the listener
// with Authkey (its challenge is not a TLS record, the ClientHello is
// not a frame); a plain client of a TLS listener waits for a challenge
// that never comes, so that mismatch ends with the handshake timeout (or
// the client's context).
//
// TLS is for "tcp" networks only: Listen and Dial refuse it on a unix
// socket, whose peers are local and checked by the socket file's
// permissions (and SameUser). A Conn over TLS cannot pass files
// (SendFiles and RecvFiles return ErrNotSocket, as on plain TCP) and
// cannot be handed to another process (MultiprocHandle fails): the TLS
// session lives in this process.
//
// Close on such a Conn forwards what was sent before it, sends TLS's
// close_notify and closes the TCP connection. For a peer that does not
// read, it gives up forwarding after 5 seconds (and crypto/tls bounds
// close_notify by as much). No goroutine or descriptor of the Conn
// outlives Close.
//
// TLS ends in two goroutines per Conn that copy between the TLS
// connection and a socketpair the Conn runs on (so the Conn's read path,
// cancellation and Wait are those of every other Conn). Such a Conn
// waits in the runtime's netpoller (as with WaitInNetpoller): its bytes
// come from this process's goroutines, which a receiver blocked in
// poll(2) would keep waiting for a P. Each message thus takes one more
// hop and goroutine wake-up each way on each side: on loopback a small
// round trip costs about twice that of plain TCP (BenchmarkTLSRoundTrip).
// A TLS or network error from the peer ends the stream: the receive
// returns an error that matches io.EOF (or ErrTruncated inside a frame)
// with errors.Is and wraps the TLS error, so errors.As finds, for example,
// a tls.RecordHeaderError.
func TLS(cfg *tls.Config) ListenOption {
	var c *tls.Config
	if cfg != nil {
		c = cfg.Clone()
	}
	return func(o *listenOptions) { o.tls = c }
}

// checkTLS validates TLS for network; server says whether for Listen.
func (o *listenOptions) checkTLS(op, network string, server bool) error {
	if o.tls == nil {
		return nil
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return fmt.Errorf("ipc: %s: TLS needs a tcp network, not %q (a unix socket is local: its peers are checked by the socket file's permissions and SameUser)", op, network)
	}
	if server && len(o.tls.Certificates) == 0 && o.tls.GetCertificate == nil && o.tls.GetConfigForClient == nil {
		return fmt.Errorf("ipc: %s: TLS needs a server tls.Config with a certificate (Certificates, GetCertificate or GetConfigForClient)", op)
	}
	return nil
}

// clientTLS returns the client configuration for a Dial to address: with
// ServerName taken from address when the configuration has none.
func clientTLS(cfg *tls.Config, address string) *tls.Config {
	if cfg.ServerName != "" || cfg.InsecureSkipVerify {
		return cfg
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return cfg
	}
	cfg = cfg.Clone()
	cfg.ServerName = host
	return cfg
}

// tlsHandshake runs the TLS handshake on nc (as the server or the client)
// within ctx, and returns the Conn's end of a socketpair whose other end
// is pumped to and from the TLS connection. On failure nc is closed.
func tlsHandshake(ctx context.Context, nc net.Conn, cfg *tls.Config, server bool) (*tlsEnd, error) {
	var tc *tls.Conn
	if server {
		tc = tls.Server(nc, cfg)
	} else {
		tc = tls.Client(nc, cfg)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	a, b, err := socketpair()
	if err != nil {
		tc.Close()
		return nil, err
	}
	e := &tlsEnd{UnixConn: a, tc: tc, peer: b, rdone: make(chan struct{}), wdone: make(chan struct{})}
	go e.readPump()
	go e.writePump()
	return e, nil
}

// tlsEnd is the transport of a Conn over TLS: the Conn's end of the
// socketpair, and the pumps behind it. It is deliberately not a
// *net.UnixConn, so that the Conn does not offer to pass files through it.
type tlsEnd struct {
	*net.UnixConn // the Conn's end

	tc    *tls.Conn
	peer  *net.UnixConn // the pumps' end
	rdone chan struct{} // closed when readPump returns
	wdone chan struct{} // closed when writePump returns

	rerr atomic.Pointer[error] // what ended readPump, unless a clean end

	once     sync.Once
	closeErr error
}

// readPump copies what the TLS peer sends to the Conn. The peer's end of
// stream (or a TLS or network error, which the Conn cannot be told about
// otherwise) becomes an end of stream for the Conn: a receive returns
// io.EOF, or ErrTruncated inside a frame, wrapped with the error kept in
// rerr (Conn.recvFrame).
func (e *tlsEnd) readPump() {
	defer close(e.rdone)
	buf := make([]byte, tlsReadBuf)
	for {
		n, err := e.tc.Read(buf)
		if n > 0 {
			if _, werr := e.peer.Write(buf[:n]); werr != nil {
				return // the Conn is closed
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				e.rerr.Store(&err)
			}
			e.peer.CloseWrite()
			return
		}
	}
}

// readErr returns the TLS or network error that ended the stream from the
// peer, if one did (nil for a clean end or while the stream is open).
func (e *tlsEnd) readErr() error {
	if p := e.rerr.Load(); p != nil {
		return *p
	}
	return nil
}

// writePump copies what the Conn sends to the TLS peer. At the Conn's
// Close it forwards what is left, then sends close_notify. When the TLS
// connection fails it shuts the socketpair so that the Conn's sends fail
// (EPIPE) instead of filling the socketpair's buffer and blocking.
func (e *tlsEnd) writePump() {
	defer close(e.wdone)
	buf := make([]byte, tlsWriteBuf)
	for {
		n, err := e.peer.Read(buf)
		if n > 0 {
			if _, werr := e.tc.Write(buf[:n]); werr != nil {
				// The Conn's end can no longer send (EPIPE); drop what
				// it queued, so that a sender waiting for room in the
				// socketpair wakes up and sees that.
				e.peer.CloseRead()
				io.Copy(io.Discard, e.peer)
				return
			}
		}
		if err != nil {
			e.tc.CloseWrite()
			return
		}
	}
}

// Close closes the Conn's end, lets the write pump flush (bounded by
// tlsFlushTimeout), closes the TLS connection and waits for both pumps.
func (e *tlsEnd) Close() error {
	e.once.Do(func() {
		e.closeErr = e.UnixConn.Close()
		e.tc.SetWriteDeadline(time.Now().Add(tlsFlushTimeout))
		<-e.wdone
		e.tc.Close()
		<-e.rdone
		e.peer.Close()
	})
	return e.closeErr
}

// TLSConnectionState returns the state of the TLS connection under c (the
// negotiated version, the peer's certificates, ...) and true, or false for
// a Conn that does not run over TLS (see TLS).
func (c *Conn) TLSConnectionState() (tls.ConnectionState, bool) {
	e, ok := c.r.(*tlsEnd)
	if !ok {
		return tls.ConnectionState{}, false
	}
	return e.tc.ConnectionState(), true
}

// errTLSHandle is MultiprocHandle's refusal for a Conn over TLS.
var errTLSHandle = errors.New("ipc: a connection over TLS cannot be handed to another process (its TLS session lives in this process); let the other process dial its own")

// isTLS reports whether t is the transport of a Conn over TLS.
func isTLS(t transport) bool {
	_, ok := t.(*tlsEnd)
	return ok
}

// tlsError wraps a failed TLS handshake with peer's address. hctx is the
// handshake's context (bounded by HandshakeTimeout), ctx the caller's.
func tlsError(ctx, hctx context.Context, peer string, err error) error {
	if ctx.Err() == nil && hctx.Err() != nil {
		err = fmt.Errorf("timed out (does the peer use TLS?): %w", hctx.Err())
	}
	return &HandshakeError{Peer: peer, TLS: true, Err: err}
}
