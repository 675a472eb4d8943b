// SPDX-License-Identifier: Apache-2.0

package mptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSCerts is a throwaway public key infrastructure for tests, made in
// memory: a self-signed CA and a server and a client certificate it
// signed, valid for 127.0.0.1, ::1 and localhost for one hour.
type TLSCerts struct {
	CA     *x509.CertPool
	CAPEM  []byte // the CA certificate, PEM-encoded (for another process)
	Server tls.Certificate
	Client tls.Certificate
}

// NewTLSCerts makes a fresh TLSCerts (ECDSA P-256 keys), failing t on
// error.
func NewTLSCerts(t testing.TB) *TLSCerts {
	t.Helper()
	c, err := MakeTLSCerts()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// MakeTLSCerts makes a fresh TLSCerts (ECDSA P-256 keys), for Examples,
// which have no testing.TB.
func MakeTLSCerts() (*TLSCerts, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mptest CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) (tls.Certificate, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return tls.Certificate{}, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-time.Minute),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return tls.Certificate{}, err
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	c := &TLSCerts{CA: pool, CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	if c.Server, err = leaf(2, "mptest server", x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	if c.Client, err = leaf(3, "mptest client", x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}
	return c, nil
}

// ServerConfig returns a server configuration with the server
// certificate.
func (c *TLSCerts) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.Server}, MinVersion: tls.VersionTLS12}
}

// MutualServerConfig is ServerConfig that also requires a client
// certificate signed by the CA.
func (c *TLSCerts) MutualServerConfig() *tls.Config {
	cfg := c.ServerConfig()
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.ClientCAs = c.CA
	return cfg
}

// ClientConfig returns a client configuration that trusts the CA (and
// offers the client certificate to a server that asks for one).
func (c *TLSCerts) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: c.CA, Certificates: []tls.Certificate{c.Client}, MinVersion: tls.VersionTLS12}
}

// TLSFiles names the PEM files WriteFiles wrote.
type TLSFiles struct {
	CA                    string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
}

// WriteFiles writes the CA certificate and the server's and client's
// certificates and keys as PEM files in dir (for another process, or an
// API that takes file names), failing t on error.
func (c *TLSCerts) WriteFiles(t testing.TB, dir string) TLSFiles {
	t.Helper()
	f := TLSFiles{
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem"),
	}
	write := func(name string, blockType string, der []byte) {
		if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	key := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	if err := os.WriteFile(f.CA, c.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	write(f.ServerCert, "CERTIFICATE", c.Server.Certificate[0])
	write(f.ServerKey, "PRIVATE KEY", key(c.Server.PrivateKey))
	write(f.ClientCert, "CERTIFICATE", c.Client.Certificate[0])
	write(f.ClientKey, "PRIVATE KEY", key(c.Client.PrivateKey))
	return f
}
