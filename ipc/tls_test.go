// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
)

type acceptResult struct {
	c   *Conn
	err error
}

// tlsPair listens on loopback TCP with lopts, dials with dopts and
// returns the result of both ends.
func tlsPair(t *testing.T, ctx context.Context, lopts, dopts []ListenOption) (server acceptResult, client acceptResult) {
	t.Helper()
	l := mustListen(t, "tcp", "127.0.0.1:0", lopts...)
	acc := make(chan acceptResult, 1)
	go func() { c, err := l.Accept(ctx); acc <- acceptResult{c, err} }()
	c, err := Dial(ctx, "tcp", l.Addr().String(), dopts...)
	server = <-acc
	if server.err != nil || err != nil {
		t.Logf("accept: %v\ndial: %v", server.err, err)
	}
	for _, r := range []acceptResult{server, {c, err}} {
		if r.c != nil {
			t.Cleanup(func() { r.c.Close() })
		}
	}
	return server, acceptResult{c, err}
}

func TestTLSListenDial(t *testing.T) {
	mptest.CheckFDs(t)
	certs := mptest.NewTLSCerts(t)
	ctx := ctxTimeout(t)
	key := Authkey([]byte("secret"))
	s, c := tlsPair(t, ctx, []ListenOption{key, TLS(certs.ServerConfig())},
		[]ListenOption{key, TLS(certs.ClientConfig())})
	if s.err != nil || c.err != nil {
		t.Fatalf("accept: %v, dial: %v", s.err, c.err)
	}
	for _, m := range []string{"", "hello", strings.Repeat("x", 100000), strings.Repeat("y", 3<<20)} {
		if err := c.c.SendBytes(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
		got, err := s.c.RecvBytes(ctx)
		if err != nil || string(got) != m {
			t.Fatalf("%d bytes: %v", len(got), err)
		}
		if err := s.c.SendBytes(ctx, got); err != nil {
			t.Fatal(err)
		}
		if got, err := c.c.RecvBytes(ctx); err != nil || string(got) != m {
			t.Fatalf("echo of %d bytes: %d bytes, %v", len(m), len(got), err)
		}
	}
	st, ok := c.c.TLSConnectionState()
	if !ok || !st.HandshakeComplete || len(st.PeerCertificates) == 0 || st.PeerCertificates[0].Subject.CommonName != "mptest server" {
		t.Fatalf("client's TLS state: ok=%v %+v", ok, st)
	}
	if _, ok := s.c.TLSConnectionState(); !ok {
		t.Fatal("server's Conn does not report TLS")
	}
	// Files cannot cross TLS, and the session cannot leave the process.
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := c.c.SendFiles(ctx, []byte("x"), f); !errors.Is(err, ErrNotSocket) {
		t.Fatalf("SendFiles over TLS: %v, want ErrNotSocket", err)
	}
	if _, _, err := s.c.RecvFiles(ctx); !errors.Is(err, ErrNotSocket) {
		t.Fatalf("RecvFiles over TLS: %v, want ErrNotSocket", err)
	}
	if _, _, err := c.c.MultiprocHandle(); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("MultiprocHandle over TLS: %v", err)
	}
	// A cancelled receive loses nothing, as on any Conn.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.c.RecvBytes(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled receive: %v", err)
	}
	// What is sent right before Close arrives, then the end of stream.
	if err := c.c.SendBytes(ctx, []byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := c.c.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.c.RecvBytes(ctx); err != nil || string(got) != "last words" {
		t.Fatalf("after the peer's Close: %q, %v", got, err)
	}
	if _, err := s.c.RecvBytes(ctx); err != io.EOF {
		t.Fatalf("then %v, want io.EOF", err)
	}
	// Sending to a peer that has gone fails; it does not block.
	for {
		if err := s.c.SendBytes(ctx, []byte(strings.Repeat("z", 1<<16))); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("send to a closed peer blocked: %v", err)
			}
			break
		}
	}
	if err := s.c.Close(); err != nil {
		t.Fatal(err)
	}
}

// A frame larger than every buffer on the way, sent to a peer that has
// closed: the send fails, it does not wait for room that never comes.
func TestTLSBigSendToClosedPeer(t *testing.T) {
	mptest.CheckFDs(t)
	certs := mptest.NewTLSCerts(t)
	ctx := ctxTimeout(t)
	s, c := tlsPair(t, ctx, []ListenOption{TLS(certs.ServerConfig())}, []ListenOption{TLS(certs.ClientConfig())})
	if s.err != nil || c.err != nil {
		t.Fatalf("accept: %v, dial: %v", s.err, c.err)
	}
	s.c.Close()
	if err := c.c.SendBytes(ctx, make([]byte, 64<<20)); err == nil || ctx.Err() != nil {
		t.Fatalf("send to a closed peer: %v (context: %v)", err, ctx.Err())
	}
}

// Close returns, and leaves no goroutine or descriptor behind, when the
// peer reads nothing and every buffer between them is full.
func TestTLSCloseStuckPeer(t *testing.T) {
	mptest.CheckFDs(t)
	defer func(d time.Duration) { tlsFlushTimeout = d }(tlsFlushTimeout)
	tlsFlushTimeout = 50 * time.Millisecond
	certs := mptest.NewTLSCerts(t)
	ctx := ctxTimeout(t)
	s, c := tlsPair(t, ctx, []ListenOption{TLS(certs.ServerConfig())}, []ListenOption{TLS(certs.ClientConfig())})
	if s.err != nil || c.err != nil {
		t.Fatalf("accept: %v, dial: %v", s.err, c.err)
	}
	sent := make(chan error, 1)
	go func() { sent <- c.c.SendBytes(ctx, make([]byte, 64<<20)) }() // more than all the buffers
	if err := c.c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err == nil {
		t.Fatal("a 64 MiB send to a peer that reads nothing succeeded")
	}
	if err := s.c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTLSWithoutAuthkey(t *testing.T) {
	certs := mptest.NewTLSCerts(t)
	ctx := ctxTimeout(t)
	s, c := tlsPair(t, ctx, []ListenOption{TLS(certs.ServerConfig())}, []ListenOption{TLS(certs.ClientConfig())})
	if s.err != nil || c.err != nil {
		t.Fatalf("accept: %v, dial: %v", s.err, c.err)
	}
	if err := s.c.SendBytes(ctx, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if got, err := c.c.RecvBytes(ctx); err != nil || string(got) != "hi" {
		t.Fatalf("%q %v", got, err)
	}
}

func TestTLSWrongAuthkey(t *testing.T) {
	mptest.CheckFDs(t)
	certs := mptest.NewTLSCerts(t)
	ctx := ctxTimeout(t)
	s, c := tlsPair(t, ctx, []ListenOption{Authkey([]byte("secret")), TLS(certs.ServerConfig())},
		[]ListenOption{Authkey([]byte("guess")), TLS(certs.ClientConfig())})
	if !errors.Is(s.err, ErrAuthentication) || !errors.Is(c.err, ErrAuthentication) {
		t.Fatalf("accept: %v, dial: %v; want ErrAuthentication on both", s.err, c.err)
	}
}

func TestTLSUntrusted(t *testing.T) {
	mptest.CheckFDs(t)
	certs := mptest.NewTLSCerts(t)
	other := mptest.NewTLSCerts(t)
	ctx := ctxTimeout(t)
	key := Authkey([]byte("secret"))
	t.Run("server", func(t *testing.T) {
		// The client trusts another CA.
		s, c := tlsPair(t, ctx, []ListenOption{key, TLS(certs.ServerConfig())},
			[]ListenOption{key, TLS(other.ClientConfig())})
		var verr *tls.CertificateVerificationError
		if !errors.As(c.err, &verr) || !strings.HasPrefix(c.err.Error(), "ipc: tls handshake with 127.0.0.1:") {
			t.Fatalf("dial: %v, want a certificate verification error", c.err)
		}
		if s.err == nil || !strings.HasPrefix(s.err.Error(), "ipc: tls handshake with 127.0.0.1:") {
			t.Fatalf("accept: %v", s.err)
		}
	})
	t.Run("name", func(t *testing.T) {
		// The certificate is for 127.0.0.1 and localhost, not this name.
		cfg := certs.ClientConfig()
		cfg.ServerName = "example.com"
		_, c := tlsPair(t, ctx, []ListenOption{key, TLS(certs.ServerConfig())}, []ListenOption{key, TLS(cfg)})
		var herr x509.HostnameError
		if !errors.As(c.err, &herr) {
			t.Fatalf("dial: %v, want a hostname error", c.err)
		}
	})
	t.Run("client", func(t *testing.T) {
		// The server wants a client certificate signed by its CA.
		cfg := other.ClientConfig()
		cfg.RootCAs = certs.CA
		s, c := tlsPair(t, ctx, []ListenOption{key, TLS(certs.MutualServerConfig())}, []ListenOption{key, TLS(cfg)})
		if s.err == nil || c.err == nil {
			t.Fatalf("accept: %v, dial: %v; want both to fail", s.err, c.err)
		}
		var verr *tls.CertificateVerificationError
		if !errors.As(s.err, &verr) {
			t.Fatalf("accept: %v, want a certificate verification error", s.err)
		}
		// With TLS 1.3 the client's handshake ends before the server
		// checks its certificate: the alert comes during the authkey
		// handshake, and the error says so.
		if !strings.Contains(c.err.Error(), "remote error: tls") {
			t.Fatalf("dial: %v, want the server's TLS alert", c.err)
		}
	})
	t.Run("mutual", func(t *testing.T) {
		s, c := tlsPair(t, ctx, []ListenOption{key, TLS(certs.MutualServerConfig())},
			[]ListenOption{key, TLS(certs.ClientConfig())})
		if s.err != nil || c.err != nil {
			t.Fatalf("accept: %v, dial: %v", s.err, c.err)
		}
		st, _ := s.c.TLSConnectionState()
		if len(st.PeerCertificates) == 0 || st.PeerCertificates[0].Subject.CommonName != "mptest client" {
			t.Fatalf("server sees client certificates %v", st.PeerCertificates)
		}
	})
}

// A TLS peer and a plain one never connect, and neither hangs past the
// handshake timeout.
func TestTLSMismatch(t *testing.T) {
	mptest.CheckFDs(t)
	certs := mptest.NewTLSCerts(t)
	ctx := ctxTimeout(t)
	key := Authkey([]byte("secret"))
	t.Run("tls client, plain server", func(t *testing.T) {
		// The server's challenge is not a TLS record and the ClientHello
		// is not a frame: both fail at once.
		s, c := tlsPair(t, ctx, []ListenOption{key}, []ListenOption{key, TLS(certs.ClientConfig())})
		if c.err == nil || !strings.HasPrefix(c.err.Error(), "ipc: tls handshake with") {
			t.Fatalf("dial: %v", c.err)
		}
		if !errors.Is(s.err, ErrAuthentication) {
			t.Fatalf("accept: %v, want ErrAuthentication", s.err)
		}
	})
	t.Run("plain client, tls server", func(t *testing.T) {
		// The client waits for a challenge, the server for a ClientHello:
		// the server's handshake timeout ends both.
		s, c := tlsPair(t, ctx, []ListenOption{key, TLS(certs.ServerConfig()), HandshakeTimeout(100 * time.Millisecond)},
			[]ListenOption{key})
		if !errors.Is(s.err, context.DeadlineExceeded) || !strings.Contains(s.err.Error(), "does the peer use TLS?") {
			t.Fatalf("accept: %v", s.err)
		}
		if !errors.Is(c.err, ErrAuthentication) {
			t.Fatalf("dial: %v, want ErrAuthentication", c.err)
		}
	})
}

func TestTLSDialCancel(t *testing.T) {
	mptest.CheckFDs(t)
	certs := mptest.NewTLSCerts(t)
	// A listener that accepts and never answers the ClientHello.
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := nl.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		nl.Close()
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	}()
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			c, err := Dial(ctx, "tcp", nl.Addr().String(), TLS(certs.ClientConfig()))
			if c != nil {
				c.Close()
			}
			done <- err
		}()
		peer := <-accepted
		defer peer.Close()
		// Wait for the ClientHello: Dial is in the handshake.
		if _, err := peer.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "ipc: tls handshake with") {
			t.Fatalf("cancelled Dial: %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		c, err := Dial(context.Background(), "tcp", nl.Addr().String(), TLS(certs.ClientConfig()),
			HandshakeTimeout(50*time.Millisecond))
		if c != nil {
			c.Close()
		}
		(<-accepted).Close()
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("Dial: %v", err)
		}
	})
}

func TestTLSRefused(t *testing.T) {
	certs := mptest.NewTLSCerts(t)
	sock := filepath.Join(t.TempDir(), "s")
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"listen unix", func() error {
			l, err := Listen("unix", sock, TLS(certs.ServerConfig()))
			if err == nil {
				l.Close()
			}
			return err
		}, "TLS needs a tcp network"},
		{"dial abstract", func() error {
			c, err := Dial(context.Background(), "unix", "@mptest-tls", TLS(certs.ClientConfig()))
			if err == nil {
				c.Close()
			}
			return err
		}, "TLS needs a tcp network"},
		{"listen without certificate", func() error {
			l, err := Listen("tcp", "127.0.0.1:0", TLS(&tls.Config{}))
			if err == nil {
				l.Close()
			}
			return err
		}, "with a certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// ctxTimeout bounds a whole test: a generous ceiling, never a pass
// condition.
func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// BenchmarkTLSRoundTrip measures a 16-byte request/response between two
// goroutines over loopback TCP, plain and with TLS: the cost of the TLS
// pump (a socketpair hop and a goroutine wake-up each way on each side).
func BenchmarkTLSRoundTrip(b *testing.B) {
	certs := mptest.NewTLSCerts(b)
	for _, tr := range []struct {
		name       string
		lopt, dopt []ListenOption
	}{
		{"tcp", nil, nil},
		{"tls", []ListenOption{TLS(certs.ServerConfig())}, []ListenOption{TLS(certs.ClientConfig())}},
	} {
		b.Run(tr.name, func(b *testing.B) {
			ctx := context.Background()
			l, err := Listen("tcp", "127.0.0.1:0", tr.lopt...)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			acc := make(chan acceptResult, 1)
			go func() { c, err := l.Accept(ctx); acc <- acceptResult{c, err} }()
			c, err := Dial(ctx, "tcp", l.Addr().String(), tr.dopt...)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			s := <-acc
			if s.err != nil {
				b.Fatal(s.err)
			}
			defer s.c.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]byte, 64)
				for {
					n, err := s.c.RecvBytesInto(ctx, buf)
					if err != nil {
						return
					}
					if s.c.SendBytes(ctx, buf[:n]) != nil {
						return
					}
				}
			}()
			msg := make([]byte, 16)
			buf := make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if err := c.SendBytes(ctx, msg); err != nil {
					b.Fatal(err)
				}
				if _, err := c.RecvBytesInto(ctx, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1000/float64(b.N), "us")
			c.Close()
			<-done
		})
	}
}

// A TLS error in the middle of a session (here: bytes that are no TLS
// record, from a peer that completed the handshake) ends the Conn's stream,
// and the receive says why: the error matches io.EOF and wraps the TLS
// error.
func TestTLSErrorMidSession(t *testing.T) {
	mptest.CheckFDs(t)
	certs := mptest.NewTLSCerts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	served := make(chan error, 1)
	go func() {
		raw, err := nl.Accept()
		if err != nil {
			served <- err
			return
		}
		defer raw.Close()
		tc := tls.Server(raw, certs.ServerConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			served <- err
			return
		}
		// One good frame, then garbage under the TLS layer.
		if _, err := tc.Write([]byte{0, 0, 0, 2, 'o', 'k'}); err != nil {
			served <- err
			return
		}
		_, err = raw.Write([]byte("this is not a TLS record at all"))
		served <- err
		// Hold the connection until the client has read: its error must
		// come from the garbage, not from this end closing.
		io.Copy(io.Discard, raw)
	}()
	c, err := Dial(ctx, "tcp", nl.Addr().String(), TLS(certs.ClientConfig()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if b, err := c.RecvBytes(ctx); err != nil || string(b) != "ok" {
		t.Fatalf("first frame = %q, %v", b, err)
	}
	_, err = c.RecvBytes(ctx)
	if !errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "TLS: ") {
		t.Fatalf("receive after a bad record = %v, want io.EOF carrying the TLS error", err)
	}
	var rh tls.RecordHeaderError
	if !errors.As(err, &rh) {
		t.Fatalf("receive after a bad record = %v, want it to wrap crypto/tls's RecordHeaderError", err)
	}
}
