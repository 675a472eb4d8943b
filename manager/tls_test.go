// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/manager"
	"github.com/multiproc/multiproc/process"
)

// tlsServer is a manager server on 127.0.0.1 that takes only TLS, with
// the certificates its clients need.
type tlsServer struct {
	certs *mptest.TLSCerts
	addr  string
	key   []byte
}

func startTLSServer(t testing.TB, serverCfg func(*mptest.TLSCerts) *tls.Config) *tlsServer {
	t.Helper()
	certs := mptest.NewTLSCerts(t)
	key := make([]byte, 32)
	rand.Read(key)
	l, err := manager.Listen("tcp", "127.0.0.1:0", manager.Authkey(key), manager.TLS(serverCfg(certs)))
	if err != nil {
		t.Fatal(err)
	}
	srv := manager.NewServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, manager.ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	})
	return &tlsServer{certs: certs, addr: l.Addr().String(), key: key}
}

// connect connects to ts with opts (the right authkey unless opts has
// another) and closes the client at the end of the test.
func (ts *tlsServer) connect(t testing.TB, ctx context.Context, opts ...manager.Option) (*manager.Client, error) {
	t.Helper()
	c, err := manager.Connect(ctx, "tcp", ts.addr, append([]manager.Option{manager.Authkey(ts.key)}, opts...)...)
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// childTLS uses proxies of a TLS-only server handed to it: it needs a
// client configuration first, which it makes from the CA certificate it
// is given (trusted roots never travel in a proxy's descriptor).
var childTLS = process.Register("mgr.tls.child", func(ctx context.Context, caPEM []byte, d *manager.Dict[string, int], l *manager.List[string]) error {
	if _, err := d.Get(ctx, "a"); err == nil || !strings.Contains(err.Error(), "SetClientTLS") {
		return fmt.Errorf("call without SetClientTLS: %v, want an error naming SetClientTLS", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("bad CA certificate")
	}
	manager.SetClientTLS(&tls.Config{RootCAs: pool})
	a, err := d.Get(ctx, "a")
	if err != nil {
		return err
	}
	if err := d.Set(ctx, "child", a+1); err != nil {
		return err
	}
	return l.Append(ctx, "from the child")
})

func TestTLSRemoteManager(t *testing.T) {
	mptest.CheckChildren(t)
	ts := startTLSServer(t, (*mptest.TLSCerts).ServerConfig)
	ctx := ctxT(t)
	c, err := ts.connect(t, ctx, manager.TLS(ts.certs.ClientConfig()))
	if err != nil {
		t.Fatal(err)
	}
	d, err := manager.NewDict(ctx, c, map[string]int{"a": 41})
	if err != nil {
		t.Fatal(err)
	}
	l, err := manager.NewList(ctx, c, "from the parent")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "b", 2); err != nil {
		t.Fatal(err)
	}
	runChild(t, childTLS, ts.certs.CAPEM, d, l)
	got, err := d.Copy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"a": 41, "b": 2, "child": 42}, got); diff != "" {
		t.Errorf("dict (-want +got):\n%s", diff)
	}
	items, err := l.Copy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"from the parent", "from the child"}, items); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
}

// Every way of not having the right key or the right certificates gets
// nothing, fails without hanging, and leaves the server serving others.
func TestTLSRefused(t *testing.T) {
	mptestFDs(t)
	ts := startTLSServer(t, (*mptest.TLSCerts).MutualServerConfig)
	ctx := ctxT(t)
	other := mptest.NewTLSCerts(t)
	good := ts.certs.ClientConfig()
	noCert := ts.certs.ClientConfig()
	noCert.Certificates = nil
	foreignCert := ts.certs.ClientConfig()
	foreignCert.Certificates = other.ClientConfig().Certificates
	tests := []struct {
		name string
		opts []manager.Option
		// a plain client waits for a challenge that a TLS server never
		// sends: only its own context ends the wait.
		timeout time.Duration
		check   func(error) bool
	}{
		{"wrong authkey", []manager.Option{manager.Authkey([]byte("guess")), manager.TLS(good)}, 0,
			func(err error) bool { return errors.Is(err, ipc.ErrAuthentication) }},
		{"no TLS", nil, 300 * time.Millisecond,
			func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{"untrusted server", []manager.Option{manager.TLS(other.ClientConfig())}, 0,
			func(err error) bool {
				var verr *tls.CertificateVerificationError
				return errors.As(err, &verr) && strings.Contains(err.Error(), "tls handshake with")
			}},
		{"no client certificate", []manager.Option{manager.TLS(noCert)}, 0,
			func(err error) bool { return strings.Contains(err.Error(), "certificate") }},
		{"untrusted client certificate", []manager.Option{manager.TLS(foreignCert)}, 0,
			func(err error) bool { return strings.Contains(err.Error(), "unknown certificate authority") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cctx := ctx
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				cctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			c, err := ts.connect(t, cctx, tt.opts...)
			if err == nil {
				t.Fatal("connected")
			}
			if !tt.check(err) || !strings.HasPrefix(err.Error(), "manager: connect to tcp") {
				t.Fatalf("unexpected error: %v", err)
			}
			if c != nil {
				t.Fatal("a Client with an error")
			}
		})
	}
	c, err := ts.connect(t, ctx, manager.TLS(good))
	if err != nil {
		t.Fatalf("good client after the bad ones: %v", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// A TLS client of a plain server fails at once: the server's challenge is
// not a TLS record.
func TestTLSClientPlainServer(t *testing.T) {
	ts := startServer(t, "tcp")
	certs := mptest.NewTLSCerts(t)
	c, err := manager.Connect(ctxT(t), "tcp", ts.addr, manager.Authkey(ts.key), manager.TLS(certs.ClientConfig()))
	if err == nil {
		c.Close()
		t.Fatal("connected")
	}
	if !strings.Contains(err.Error(), "tls handshake with") {
		t.Fatalf("unexpected error: %v", err)
	}
	if err := ts.client.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestTLSConnectCancel(t *testing.T) {
	mptestFDs(t)
	certs := mptest.NewTLSCerts(t)
	// A peer that accepts and never answers the ClientHello.
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		c, err := manager.Connect(ctx, "tcp", nl.Addr().String(), manager.Authkey([]byte("k")), manager.TLS(certs.ClientConfig()))
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	peer, err := nl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.Read(make([]byte, 1)); err != nil { // the ClientHello
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "tls handshake with") {
		t.Fatalf("cancelled Connect: %v", err)
	}
}

// The server process of Start gets its TLS configuration from a function
// registered at package level, which loads the certificate from the
// environment here.
var testServerTLS = manager.RegisterServerTLS("manager_test", func() (*tls.Config, error) {
	cert, err := tls.X509KeyPair([]byte(os.Getenv("MANAGER_TEST_TLS_CERT")), []byte(os.Getenv("MANAGER_TEST_TLS_KEY")))
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
})

// setServerTLSEnv puts a server certificate of certs where testServerTLS
// finds it (the server process inherits the environment).
func setServerTLSEnv(t testing.TB, certs *mptest.TLSCerts) {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(certs.Server.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("MANAGER_TEST_TLS_CERT", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs.Server.Certificate[0]})))
	t.Setenv("MANAGER_TEST_TLS_KEY", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})))
}

func TestTLSStart(t *testing.T) {
	mptest.CheckChildren(t)
	certs := mptest.NewTLSCerts(t)
	setServerTLSEnv(t, certs)
	ctx := ctxT(t)
	key := []byte("start key")
	m, err := manager.Start(ctx, manager.Address("tcp", "127.0.0.1:0"), manager.Authkey(key),
		manager.ServerTLS(testServerTLS))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	d, err := manager.NewDict(ctx, m.Client, map[string]int{"a": 41})
	if err != nil {
		t.Fatal(err)
	}
	l, err := manager.NewList[string](ctx, m.Client)
	if err != nil {
		t.Fatal(err)
	}
	// The Manager's proxies say that their server takes only TLS.
	runChild(t, childTLS, certs.CAPEM, d, l)
	network, addr := m.Address()
	remote, err := manager.Connect(ctx, network, addr, manager.Authkey(key), manager.TLS(certs.ClientConfig()))
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	d2, err := manager.NewDict[string, int](ctx, remote)
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Set(ctx, "x", 1); err != nil {
		t.Fatal(err)
	}
	if v, err := d.Get(ctx, "child"); err != nil || v != 42 {
		t.Fatalf("d[child] = %v, %v", v, err)
	}
	// Without TLS, the started server gives nothing.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if c, err := manager.Connect(cctx, network, addr, manager.Authkey(key)); err == nil {
		c.Close()
		t.Fatal("a plain client connected to a TLS server")
	}
}

func TestTLSStartOptions(t *testing.T) {
	certs := mptest.NewTLSCerts(t)
	ctx := ctxT(t)
	tests := []struct {
		name string
		opts []manager.Option
		want string
	}{
		{"tls.Config", []manager.Option{manager.Address("tcp", "127.0.0.1:0"), manager.TLS(certs.ServerConfig())}, "RegisterServerTLS"},
		{"unregistered", []manager.Option{manager.Address("tcp", "127.0.0.1:0"), manager.ServerTLS("nope")}, "no function registered"},
		{"unix", []manager.Option{manager.ServerTLS(testServerTLS)}, "needs a tcp address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := manager.Start(ctx, tt.opts...)
			if err == nil {
				m.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
	t.Run("listen unix", func(t *testing.T) {
		l, err := manager.Listen("unix", t.TempDir()+"/s", manager.Authkey([]byte("k")), manager.TLS(certs.ServerConfig()))
		if err == nil {
			l.Close()
			t.Fatal("listening")
		}
		if !strings.Contains(err.Error(), "TLS needs a tcp network") {
			t.Fatalf("unexpected error: %v", err)
		}
	})
}

// A TLS client process killed while holding references and a lock: the
// server's pump sees the TCP connection end, the Conn reads the end of
// stream, and the server drops the references and hands the lock over.
var childTLSHolder = process.Register("mgr.tls.holder", func(ctx context.Context, caPEM []byte, lock *manager.Lock, ready *ipc.Conn, address string, key []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("bad CA certificate")
	}
	cfg := &tls.Config{RootCAs: pool}
	manager.SetClientTLS(cfg)
	return holdUntilKilled(ctx, lock, ready, "tcp", address, manager.Authkey(key), manager.TLS(cfg))
})

func TestTLSClientKilled(t *testing.T) {
	mptest.CheckChildren(t)
	ts := startTLSServer(t, (*mptest.TLSCerts).ServerConfig)
	ctx := ctxT(t)
	c, err := ts.connect(t, ctx, manager.TLS(ts.certs.ClientConfig()))
	if err != nil {
		t.Fatal(err)
	}
	lock, err := manager.NewLock(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := c.Objects(ctx)
	mine, theirs, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	p := &process.Process{Func: childTLSHolder, Args: []any{ts.certs.CAPEM, lock, theirs, ts.addr, ts.key}}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	if _, err := mine.RecvBytes(ctx); err != nil {
		t.Fatalf("child not ready: %v (%v)", err, p.Wait())
	}
	if during, _ := c.Objects(ctx); len(during) != len(before)+3 {
		t.Fatalf("child holds %d objects, want 3", len(during)-len(before))
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	p.Wait()
	if err := lock.Acquire(ctx); !errors.Is(err, manager.ErrOwnerDead) {
		t.Fatalf("acquire after the holder died: %v, want ErrOwnerDead", err)
	}
	if err := lock.Release(ctx); err != nil {
		t.Fatal(err)
	}
	waitObjectsFreed(ctx, t, c, before)
}
