// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/manager"
)

// tlsFiles are the PEM files of an mptest.TLSCerts, as a user of mp
// manager serve has them.
type tlsFiles struct {
	certs                   *mptest.TLSCerts
	ca                      string // the CA's certificate
	serverCert, serverKey   string
	clientCert, clientKey   string
	authkey                 []byte
	authkeyFile             string
	otherCerts              *mptest.TLSCerts // a CA (and its leaves) that the server does not know
	otherCA                 string
	otherClient, otherCKey  string
	expiredCert, expiredKey string // a self-signed certificate that expired an hour ago
}

// writePEM writes blocks of type typ to a new file in dir.
func writePEM(t *testing.T, dir, name, typ string, ders ...[]byte) string {
	t.Helper()
	var b []byte
	for _, der := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})...)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeKeyPair writes c's certificate and its private key (PKCS #8).
func writeKeyPair(t *testing.T, dir, name string, c tls.Certificate) (cert, key string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name+".pem", "CERTIFICATE", c.Certificate...), writePEM(t, dir, name+"-key.pem", "PRIVATE KEY", der)
}

// expiredCert makes a self-signed certificate for localhost that expired
// an hour ago.
func expiredCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "expired"},
		NotBefore:    now.Add(-2 * time.Hour),
		NotAfter:     now.Add(-time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func newTLSFiles(t *testing.T) *tlsFiles {
	t.Helper()
	dir := t.TempDir()
	f := &tlsFiles{certs: mptest.NewTLSCerts(t), otherCerts: mptest.NewTLSCerts(t)}
	f.ca = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(f.ca, f.certs.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	f.serverCert, f.serverKey = writeKeyPair(t, dir, "server", f.certs.Server)
	f.clientCert, f.clientKey = writeKeyPair(t, dir, "client", f.certs.Client)
	f.otherCA = filepath.Join(dir, "other-ca.pem")
	if err := os.WriteFile(f.otherCA, f.otherCerts.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	f.otherClient, f.otherCKey = writeKeyPair(t, dir, "other-client", f.otherCerts.Client)
	f.expiredCert, f.expiredKey = writeKeyPair(t, dir, "expired", expiredCert(t))
	f.authkey = []byte("a key shared with the TLS clients")
	f.authkeyFile = filepath.Join(dir, "authkey")
	if err := os.WriteFile(f.authkeyFile, append(f.authkey, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// serveTLS starts mp manager serve over TLS on a free loopback port and
// returns the command, its output so far and the address.
func serveTLS(t *testing.T, bin string, f *tlsFiles, extra ...string) (*exec.Cmd, []string, io.ReadCloser, string) {
	t.Helper()
	args := append([]string{"--addr", "127.0.0.1:0", "--authkey-file", f.authkeyFile, "--tls-cert", f.serverCert, "--tls-key", f.serverKey}, extra...)
	cmd, lines, stdout := serve(t, bin, args...)
	addr, ok := strings.CutPrefix(lines[0], "manager serving on tcp ")
	if !ok || strings.HasSuffix(addr, ":0") {
		t.Fatalf("first line %q, want the tcp address with the port picked", lines[0])
	}
	return cmd, lines, stdout, addr
}

// refused wants Connect with opts to fail within a short time (its
// context ends it if the server keeps it waiting) and returns its error.
func refused(t *testing.T, what, addr string, opts ...manager.Option) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := manager.Connect(ctx, "tcp", addr, opts...)
	if err == nil {
		c.Close()
		t.Errorf("Connect %s: succeeded, want it refused", what)
		return nil
	}
	t.Logf("Connect %s: %v", what, err)
	return err
}

func testManagerServeTLS(t *testing.T, bin string) {
	mptest.CheckFDs(t)
	f := newTLSFiles(t)
	cmd, lines, stdout, addr := serveTLS(t, bin, f)
	out := strings.Join(lines, "\n")
	for _, want := range []string{
		"tls certificate " + f.serverCert + " for localhost, 127.0.0.1, ::1, valid until ",
		"manager.TLS(cfg)",
		`manager.Connect(ctx, "tcp", "` + addr + `"`,
		`os.ReadFile("` + f.serverCert + `")`,
		`cfg.ServerName = "localhost"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "client certificate") {
		t.Errorf("output speaks of client certificates without --tls-client-ca:\n%s", out)
	}

	// A client trusting the CA: works, with or without a certificate.
	useDict(t, "tcp", addr, f.authkey, manager.TLS(&tls.Config{RootCAs: f.certs.CA}))
	useDict(t, "tcp", addr, f.authkey, manager.TLS(f.certs.ClientConfig()))
	// Trusting the server's certificate itself, as the printed snippet
	// does with the --tls-cert file.
	pemCert, err := os.ReadFile(f.serverCert)
	if err != nil {
		t.Fatal(err)
	}
	leafRoots := x509.NewCertPool()
	if !leafRoots.AppendCertsFromPEM(pemCert) {
		t.Fatalf("no certificate in %s", f.serverCert)
	}
	useDict(t, "tcp", addr, f.authkey, manager.TLS(&tls.Config{RootCAs: leafRoots}))
	// Dialled by a name of the certificate that is not the host.
	useDict(t, "tcp", addr, f.authkey, manager.TLS(&tls.Config{RootCAs: f.certs.CA, ServerName: "localhost"}))

	key := manager.Authkey(f.authkey)
	// Without TLS: the server never answers in clear, the client's
	// context ends the wait.
	if err := refused(t, "without TLS", addr, key); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Connect without TLS: %v, want its context's deadline", err)
	}
	// Not trusting the server's CA.
	err = refused(t, "trusting another CA", addr, key, manager.TLS(&tls.Config{RootCAs: f.otherCerts.CA}))
	var unknown x509.UnknownAuthorityError
	if err != nil && !errors.As(err, &unknown) {
		t.Errorf("Connect trusting another CA: %v, want an x509.UnknownAuthorityError", err)
	}
	// A name the certificate does not hold.
	err = refused(t, "checking another name", addr, key, manager.TLS(&tls.Config{RootCAs: f.certs.CA, ServerName: "elsewhere.example"}))
	var hostname x509.HostnameError
	if err != nil && !errors.As(err, &hostname) {
		t.Errorf("Connect checking another name: %v, want an x509.HostnameError", err)
	}
	// TLS older than 1.2.
	old := f.certs.ClientConfig()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	refused(t, "with TLS 1.1", addr, key, manager.TLS(old))
	// The authkey is still checked inside TLS.
	err = refused(t, "with a wrong key", addr, manager.Authkey([]byte("wrong")), manager.TLS(f.certs.ClientConfig()))
	if err != nil && !errors.Is(err, ipc.ErrAuthentication) {
		t.Errorf("Connect over TLS with a wrong key: %v, want ipc.ErrAuthentication", err)
	}
	// The server still serves after all that.
	useDict(t, "tcp", addr, f.authkey, manager.TLS(f.certs.ClientConfig()))
	stopServe(t, cmd, stdout)
}

func testManagerServeMutualTLS(t *testing.T, bin string) {
	mptest.CheckFDs(t)
	f := newTLSFiles(t)
	cmd, lines, stdout, addr := serveTLS(t, bin, f, "--tls-client-ca", f.ca)
	out := strings.Join(lines, "\n")
	for _, want := range []string{
		"tls client certificates required, signed by a CA in " + f.ca,
		"A client certificate signed by a CA in " + f.ca,
		"cfg.Certificates = []tls.Certificate{cert}",
		"manager.TLS(cfg)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// A client with a certificate the CA signed, loaded from the files
	// as the printed snippet does.
	cert, err := tls.LoadX509KeyPair(f.clientCert, f.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	useDict(t, "tcp", addr, f.authkey, manager.TLS(&tls.Config{RootCAs: f.certs.CA, Certificates: []tls.Certificate{cert}}))

	key := manager.Authkey(f.authkey)
	// The server's alerts (TLS 1.3) reach the client as the cause of
	// the failed authkey handshake.
	err = refused(t, "without a client certificate", addr, key, manager.TLS(&tls.Config{RootCAs: f.certs.CA}))
	if err != nil && !strings.Contains(err.Error(), "tls: certificate required") {
		t.Errorf("Connect without a client certificate: %v, want the server's alert \"certificate required\"", err)
	}
	other, err := tls.LoadX509KeyPair(f.otherClient, f.otherCKey)
	if err != nil {
		t.Fatal(err)
	}
	err = refused(t, "with a client certificate of another CA", addr, key, manager.TLS(&tls.Config{RootCAs: f.certs.CA, Certificates: []tls.Certificate{other}}))
	if err != nil && !strings.Contains(err.Error(), "tls: unknown certificate authority") {
		t.Errorf("Connect with a client certificate of another CA: %v, want the server's alert \"unknown certificate authority\"", err)
	}
	if err := refused(t, "without TLS", addr, key); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Connect without TLS: %v, want its context's deadline", err)
	}
	useDict(t, "tcp", addr, f.authkey, manager.TLS(f.certs.ClientConfig()))
	stopServe(t, cmd, stdout)
}

func testManagerServeTLSBadInput(t *testing.T, bin string) {
	f := newTLSFiles(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM at all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badDER := writePEM(t, dir, "bad-der.pem", "CERTIFICATE", []byte("not DER"))
	missing := filepath.Join(dir, "missing.pem")
	tcp := []string{"manager", "serve", "--addr", "127.0.0.1:0", "--authkey-file", f.authkeyFile}
	with := func(args ...string) []string { return append(append([]string(nil), tcp...), args...) }
	tests := []struct {
		args []string
		want string
	}{
		{with("--tls-cert", f.serverCert), "--tls-cert " + f.serverCert + " needs --tls-key"},
		{with("--tls-key", f.serverKey), "--tls-key " + f.serverKey + " needs --tls-cert"},
		{with("--tls-client-ca", f.ca), "--tls-client-ca needs --tls-cert and --tls-key"},
		{[]string{"manager", "serve", "--addr", filepath.Join(dir, "s"), "--authkey-file", f.authkeyFile, "--tls-cert", f.serverCert, "--tls-key", f.serverKey},
			"TLS (--tls-cert) needs --network tcp and a host:port --addr, not unix"},
		{[]string{"manager", "serve", "--tls-cert", f.serverCert, "--tls-key", f.serverKey}, "needs --network tcp"},
		{with("--network", "unix", "--tls-cert", f.serverCert, "--tls-key", f.serverKey), "needs --network tcp"},
		{with("--tls-cert", missing, "--tls-key", f.serverKey), "--tls-cert " + missing + ": no such file or directory"},
		{with("--tls-cert", dir, "--tls-key", f.serverKey), "--tls-cert " + dir + ": is a directory"},
		{with("--tls-cert", f.serverCert, "--tls-key", missing), "--tls-key " + missing + ": no such file or directory"},
		{with("--tls-cert", garbage, "--tls-key", f.serverKey), "--tls-cert " + garbage + ": no PEM CERTIFICATE block in it"},
		{with("--tls-cert", f.serverKey, "--tls-key", f.serverKey), "--tls-cert " + f.serverKey + ": no PEM CERTIFICATE block in it"},
		{with("--tls-cert", badDER, "--tls-key", f.serverKey), "--tls-cert " + badDER + ": x509: "},
		{with("--tls-cert", f.serverCert, "--tls-key", garbage), "--tls-key " + garbage + ": no PEM PRIVATE KEY block in it"},
		{with("--tls-cert", f.serverCert, "--tls-key", f.serverCert), "--tls-key " + f.serverCert + ": no PEM PRIVATE KEY block in it"},
		{with("--tls-cert", f.serverCert, "--tls-key", f.clientKey),
			"--tls-key " + f.clientKey + " with --tls-cert " + f.serverCert + ": tls: private key does not match public key"},
		{with("--tls-cert", f.expiredCert, "--tls-key", f.expiredKey), "--tls-cert " + f.expiredCert + ": the certificate expired at "},
		{with("--tls-cert", f.serverCert, "--tls-key", f.serverKey, "--tls-client-ca", missing), "--tls-client-ca " + missing + ": no such file or directory"},
		{with("--tls-cert", f.serverCert, "--tls-key", f.serverKey, "--tls-client-ca", garbage), "--tls-client-ca " + garbage + ": no PEM CERTIFICATE block in it"},
		{with("--tls-cert", f.serverCert, "--tls-key", f.serverKey, "--tls-client-ca", badDER), "--tls-client-ca " + badDER + ": x509: "},
	}
	for _, tt := range tests {
		mpFails(t, bin, tt.want, tt.args...)
	}
	// The flags are documented.
	help := mpOK(t, bin, "manager", "serve", "--help")
	for _, want := range []string{"--tls-cert", "--tls-key", "--tls-client-ca", "manager.TLS", "tls.RequireAndVerifyClientCert"} {
		if !strings.Contains(help, want) {
			t.Errorf("mp manager serve --help lacks %q", want)
		}
	}
}
