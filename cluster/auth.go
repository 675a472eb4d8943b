// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// Credentials are what a connection to the cluster's NATS servers
// presents: at most one of a token, a user and password, a creds file
// (a user JWT and its nkey seed, as nsc writes it) or an nkey seed file;
// and TLS, with a custom CA (CAFile) and a client certificate
// (CertFile, KeyFile) for servers that require one. TLS is used when
// the server requires it, or when a URL has the tls:// scheme. Files are
// named rather than loaded so that local agents (child processes) and
// agents on other hosts take the same settings: the environment
// variables EnvToken ... EnvTLSKey (CredentialsFromEnv).
type Credentials struct {
	Token     string
	User      string
	Password  string
	CredsFile string
	NkeyFile  string // an nkey seed file ("SU...")
	CAFile    string // PEM: the CA the servers' certificates are checked against
	CertFile  string // PEM: the client certificate
	KeyFile   string // PEM: its private key
}

// The environment variables of an agent's credentials, beside
// EnvCluster: each is the Credentials field of the same name.
const (
	EnvToken    = "MULTIPROC_CLUSTER_TOKEN"
	EnvUser     = "MULTIPROC_CLUSTER_USER"
	EnvPassword = "MULTIPROC_CLUSTER_PASSWORD"
	EnvCreds    = "MULTIPROC_CLUSTER_CREDS"
	EnvNkey     = "MULTIPROC_CLUSTER_NKEY"
	EnvTLSCA    = "MULTIPROC_CLUSTER_TLS_CA"
	EnvTLSCert  = "MULTIPROC_CLUSTER_TLS_CERT"
	EnvTLSKey   = "MULTIPROC_CLUSTER_TLS_KEY"
)

// maxCredsFile bounds the size of a file named in Credentials.
const maxCredsFile = 1 << 20

// ErrNoCredentials is returned by New when the embedded server would
// listen beyond loopback without credentials.
var ErrNoCredentials = errors.New("cluster: an embedded server that listens beyond loopback needs credentials")

// CredentialsFromEnv reads an agent's credentials from the environment
// (EnvToken, EnvUser, EnvPassword, EnvCreds, EnvNkey, EnvTLSCA,
// EnvTLSCert, EnvTLSKey) and checks them.
func CredentialsFromEnv() (Credentials, error) {
	c := Credentials{
		Token: os.Getenv(EnvToken), User: os.Getenv(EnvUser), Password: os.Getenv(EnvPassword),
		CredsFile: os.Getenv(EnvCreds), NkeyFile: os.Getenv(EnvNkey),
		CAFile: os.Getenv(EnvTLSCA), CertFile: os.Getenv(EnvTLSCert), KeyFile: os.Getenv(EnvTLSKey),
	}
	return c, c.check()
}

// check reports contradictory or incomplete credentials.
func (c Credentials) check() error {
	n := 0
	for _, set := range []bool{c.Token != "", c.User != "" || c.Password != "", c.CredsFile != "", c.NkeyFile != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("cluster: credentials: give one of a token, a user and password, a creds file or an nkey file")
	}
	if (c.User == "") != (c.Password == "") {
		return errors.New("cluster: credentials: a user needs a password and a password a user")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("cluster: credentials: a client certificate needs its key file and a key its certificate")
	}
	for _, f := range []string{c.CredsFile, c.NkeyFile, c.CAFile, c.CertFile, c.KeyFile} {
		if f == "" {
			continue
		}
		st, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("cluster: credentials: %w", err)
		}
		if st.Size() > maxCredsFile {
			return fmt.Errorf("cluster: credentials: %s is %d bytes, more than a credentials file has", f, st.Size())
		}
	}
	return nil
}

// natsOptions are the nats.go options of the credentials.
func (c Credentials) natsOptions() ([]nats.Option, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	var o []nats.Option
	switch {
	case c.Token != "":
		o = append(o, nats.Token(c.Token))
	case c.User != "":
		o = append(o, nats.UserInfo(c.User, c.Password))
	case c.CredsFile != "":
		o = append(o, nats.UserCredentials(c.CredsFile))
	case c.NkeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(c.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: credentials: %w", err)
		}
		o = append(o, opt)
	}
	if c.CAFile != "" {
		o = append(o, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" {
		o = append(o, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	return o, nil
}

// Auth sets the credentials of this caller's connections and of its
// local agents. With the embedded server, a token or a user and password
// are also what the server requires of every client (agents on other
// hosts pass the same, see EnvToken); creds and nkey files need a server
// configured for them (URL, or mp cluster serve). An embedded server
// that listens beyond loopback (Listen) refuses to start without a token
// or a user and password: New fails with ErrNoCredentials.
func Auth(c Credentials) Option {
	return func(o *options) error {
		if err := c.check(); err != nil {
			return err
		}
		o.creds = c
		return nil
	}
}

// ServerTLS makes the embedded server require TLS of its clients, with
// the certificate and key in certFile and keyFile (PEM). With
// clientCAFile, it also requires a client certificate signed by that CA.
// The local agents connect with the CA and client certificate of Auth
// (Credentials.CAFile, CertFile, KeyFile). ServerTLS has no effect with
// URL (configure the servers).
func ServerTLS(certFile, keyFile, clientCAFile string) Option {
	return func(o *options) error {
		if certFile == "" || keyFile == "" {
			return errors.New("cluster: ServerTLS: needs a certificate and a key file")
		}
		o.tlsCert, o.tlsKey, o.tlsClientCA = certFile, keyFile, clientCAFile
		return nil
	}
}

// serverSecurity applies the credentials and TLS to an embedded or
// standalone server's options, refusing to listen beyond loopback with
// no credentials.
func serverSecurity(s *server.Options, c Credentials, certFile, keyFile, clientCAFile string) error {
	switch {
	case c.CredsFile != "" || c.NkeyFile != "":
		return errors.New("cluster: an embedded server takes a token or a user and password; creds and nkey files need a configured server (URL)")
	case c.Token != "":
		s.Authorization = c.Token
	case c.User != "":
		s.Username, s.Password = c.User, c.Password
	default:
		if !loopback(s.Host) {
			return fmt.Errorf("%w: listening on %s; give a token or a user and password (Auth)", ErrNoCredentials, s.Host)
		}
	}
	if certFile != "" {
		cfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certFile, KeyFile: keyFile, CaFile: clientCAFile,
			Verify: clientCAFile != "", Timeout: 2})
		if err != nil {
			return fmt.Errorf("cluster: server TLS: %w", err)
		}
		s.TLSConfig, s.TLS, s.TLSVerify, s.TLSTimeout = cfg, true, clientCAFile != "", 2
	}
	return nil
}

// loopback reports whether host names only this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// connectOptions are a connection's options for these credentials: a
// connection refused for its credentials is logged by errLog.
func connectOptions(name string, c Credentials, errLog func(error)) ([]nats.Option, error) {
	co, err := c.natsOptions()
	if err != nil {
		return nil, err
	}
	base := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errLog(err) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { errLog(err) })}
	return append(base, co...), nil
}

// newErrLog returns a function that logs a connection's asynchronous
// errors, each distinct message once in a row (a refused reconnection
// repeats every quarter second).
func newErrLog(log *zap.Logger) func(error) {
	var mu sync.Mutex
	last := ""
	return func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil || err.Error() == last {
			return
		}
		last = err.Error()
		log.Error("connection to the cluster", zap.Error(err))
	}
}

// isAuthError reports whether a server refused a connection for its
// credentials.
func isAuthError(err error) bool {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return true
	}
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "authorization violation")
}

// connectAgent connects an agent. A server that refuses its credentials
// ends the agent with an error at once; any other failure (the server
// is not up yet) is retried without end.
func connectAgent(cfg agentConfig, log *zap.Logger) (*nats.Conn, error) {
	opts, err := connectOptions("multiproc-cluster-agent", cfg.Creds, newErrLog(log))
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err == nil {
		return nc, nil
	}
	if isAuthError(err) {
		return nil, fmt.Errorf("cluster: agent: %s refused the credentials: %w", cfg.URL, err)
	}
	log.Warn("cannot connect to the cluster yet; retrying", zap.String("url", cfg.URL), zap.Error(err))
	nc, err = nats.Connect(cfg.URL, append(opts, nats.RetryOnFailedConnect(true))...)
	if err != nil {
		return nil, fmt.Errorf("cluster: agent: connecting to %s: %w", cfg.URL, err)
	}
	return nc, nil
}
