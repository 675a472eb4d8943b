// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/multiproc/multiproc/manager"
	"github.com/spf13/cobra"
)

func managerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run a manager server",
	}
	cmd.AddCommand(managerServeCmd())
	return cmd
}

type serveOpts struct {
	addr, network, keyFile string

	tlsCert, tlsKey, tlsClientCA string // PEM files; all empty: no TLS

	publish []string // NAME=TYPE[:N]: objects the server publishes by name
}

func managerServeCmd() *cobra.Command {
	var o serveOpts
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve shared objects to remote manager clients until SIGINT or SIGTERM",
		Long: `serve runs a standalone manager server (package manager) in this process:
clients that know its address and authkey connect with manager.Connect and
create and share Dicts, Lists, Queues, Locks and the other built-in types.

--addr is a unix socket path, an abstract unix name "@name", or a TCP
"host:port" (port 0 picks a free one); by default a unix socket in a new
private temporary directory. --network (unix or tcp) is guessed from --addr
when not given.

The authkey is the content of --authkey-file (a final newline is not part of
the key). The file must not be readable or writable by group or others. If
the file does not exist, a random key is written there (mode 0600); without
--authkey-file, a random key is written to a file in the temporary directory.

The authkey proves that a client knows the key but encrypts nothing: across
a network you do not trust, serve TLS (tcp only) with --tls-cert and
--tls-key, the server's certificate (with any intermediate certificates
after it) and its private key, PEM-encoded. The TLS handshake comes first,
then the authkey handshake and every request inside TLS; clients connect
with manager.TLS and a tls.Config whose RootCAs trust the server's
certificate (or the CA that signed it), and whose ServerName, if the host
they dial is not one of the certificate's names, is one of them. With
--tls-client-ca, a PEM bundle of CA certificates, every client must also
present a certificate signed by one of them (tls.RequireAndVerifyClientCert).
TLS 1.2 is the oldest version accepted.

--publish NAME=TYPE (repeatable) makes an object of a built-in type
(Queue, JoinableQueue, dict, list, Namespace, Lock, RLock, Semaphore,
BoundedSemaphore, Event, Barrier...) and publishes it under NAME, as
Python's register('get_queue', callable=lambda: queue) does: every client
gets that same object with manager.Lookup. NAME=TYPE:N gives the type one
integer argument (a Queue's maxsize, a Semaphore's value, a Barrier's
parties). Clients can publish objects too (Client.Publish,
manager.GetOrCreate).

serve prints the address and how to connect, then runs until SIGINT or
SIGTERM (or a client's Shutdown) and shuts down cleanly: every connection
closed, every object freed, the temporary directory removed.

Exposed on a network, the server holds up against abuse: handshakes run
concurrently and are bounded per peer and in all (the oldest shed first), so
connections that stay silent delay no honest client; an authenticated client
reaches only the objects it created, was handed or looked up by name, and the calls it can keep
waiting in the server are bounded (a connection at its bound is not read
from until one ends).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "", "address: unix socket path, @abstract name or tcp host:port (default: a unix socket in a temporary directory)")
	f.StringVar(&o.network, "network", "", "unix or tcp (default: guessed from --addr)")
	f.StringVar(&o.keyFile, "authkey-file", "", "file holding the authkey, created with a random key if missing (default: a new key in the temporary directory)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "serve TLS (tcp only) with the certificate (chain) in this PEM file; needs --tls-key")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM file holding the private key of --tls-cert")
	f.StringArrayVar(&o.publish, "publish", nil, "NAME=TYPE[:N]: publish a new object of a built-in type under NAME (repeatable), e.g. jobs=Queue")
	f.StringVar(&o.tlsClientCA, "tls-client-ca", "", "PEM file of CA certificates: require client certificates signed by one of them (needs --tls-cert)")
	return cmd
}

// guessNetwork tells a TCP host:port from a unix path or @name.
func guessNetwork(addr string) string {
	if addr == "" || strings.HasPrefix(addr, "/") || strings.HasPrefix(addr, "@") || strings.HasPrefix(addr, ".") || !strings.Contains(addr, ":") {
		return "unix"
	}
	return "tcp"
}

// readKey reads an authkey file, refusing one that others may read.
func readKey(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("authkey file %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("authkey file %s is accessible to other users (mode %04o): run chmod 600 %s", path, uint32(perm), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key := bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if len(key) == 0 {
		return nil, fmt.Errorf("authkey file %s is empty", path)
	}
	return key, nil
}

// writeKey writes a new random key (64 hex digits and a newline) to path,
// which must not exist.
func writeKey(path string) ([]byte, error) {
	var raw [32]byte
	rand.Read(raw[:])
	key := []byte(hex.EncodeToString(raw[:]))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(append(key, '\n')); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, err
	}
	return key, nil
}

func runServe(ctx context.Context, w io.Writer, o serveOpts) (err error) {
	network := o.network
	if network == "" {
		network = guessNetwork(o.addr)
	}
	if network != "unix" && network != "tcp" {
		return fmt.Errorf("manager serve: --network %q: want unix or tcp", network)
	}
	if network == "tcp" && o.addr == "" {
		return errors.New("manager serve: --network tcp needs --addr host:port")
	}
	tlsCfg, err := serverTLS(o, network, time.Now())
	if err != nil {
		return fmt.Errorf("manager serve: %w", err)
	}
	var dir string
	if o.addr == "" || o.keyFile == "" {
		if dir, err = os.MkdirTemp("", "mp-manager-"); err != nil {
			return fmt.Errorf("manager serve: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	addr := o.addr
	if addr == "" {
		addr = filepath.Join(dir, "manager.sock")
	}
	keyFile, created := o.keyFile, false
	if keyFile == "" {
		keyFile = filepath.Join(dir, "authkey")
	}
	key, err := readKey(keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = writeKey(keyFile)
		created = true
	}
	if err != nil {
		return fmt.Errorf("manager serve: %w", err)
	}

	srv := manager.NewServer()
	defer srv.Close()
	published, err := publishAll(ctx, srv, o.publish)
	if err != nil {
		return fmt.Errorf("manager serve: %w", err)
	}

	lopts := []manager.Option{manager.Authkey(key)}
	if tlsCfg != nil {
		lopts = append(lopts, manager.TLS(tlsCfg))
	}
	l, err := manager.Listen(network, addr, lopts...)
	if err != nil {
		return fmt.Errorf("manager serve: %w", err)
	}
	if network == "tcp" {
		addr = l.Addr().String() // the port picked for :0
	}
	if network == "unix" && !strings.HasPrefix(addr, "@") && !strings.HasPrefix(addr, "\x00") {
		defer os.Remove(addr) // the socket file
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()

	how := "read from"
	if created {
		how = "written to"
	}
	fmt.Fprintf(w, "manager serving on %s %s\n", network, addr)
	fmt.Fprintf(w, "authkey %s %s\n", how, keyFile)
	for _, p := range published {
		fmt.Fprintf(w, "published %s\n", p)
	}
	if tlsCfg == nil {
		fmt.Fprintf(w, `connect from Go:

	key, err := os.ReadFile(%q)
	key = bytes.TrimSuffix(key, []byte("\n"))
	c, err := manager.Connect(ctx, %q, %q, manager.Authkey(key))
	defer c.Close()
	d, err := manager.NewDict[string, int](ctx, c)

stop with SIGINT or SIGTERM
`, keyFile, network, addr)
	} else {
		printTLSHowTo(w, o, tlsCfg, keyFile, addr)
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case <-srv.Done(): // a client asked for shutdown
	case serveErr = <-served:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("manager serve: shutdown: %w", err)
	}
	if serveErr != nil && !errors.Is(serveErr, manager.ErrClosed) && !errors.Is(serveErr, context.Canceled) {
		return fmt.Errorf("manager serve: %w", serveErr)
	}
	fmt.Fprintln(w, "manager shut down")
	return nil
}

// publishAll publishes the objects of --publish NAME=TYPE[:N] and
// returns a line describing each.
func publishAll(ctx context.Context, srv *manager.Server, specs []string) ([]string, error) {
	var lines []string
	for _, spec := range specs {
		name, typ, ok := strings.Cut(spec, "=")
		if !ok || name == "" || typ == "" {
			return nil, fmt.Errorf("--publish %q: want NAME=TYPE or NAME=TYPE:N", spec)
		}
		var args []any
		if t, n, ok := strings.Cut(typ, ":"); ok {
			v, err := strconv.Atoi(n)
			if err != nil {
				return nil, fmt.Errorf("--publish %q: the argument after %q is not an integer", spec, t+":")
			}
			typ, args = t, []any{v}
		}
		if err := srv.PublishNew(ctx, name, typ, args...); err != nil {
			return nil, fmt.Errorf("--publish %q: %w", spec, err)
		}
		lines = append(lines, fmt.Sprintf("%s as %s", name, typ))
	}
	return lines, nil
}

// serverTLS returns the server TLS configuration of --tls-cert, --tls-key
// and --tls-client-ca, or nil without them. Its errors name the flag and
// the file at fault.
func serverTLS(o serveOpts, network string, now time.Time) (*tls.Config, error) {
	switch {
	case o.tlsCert == "" && o.tlsKey == "":
		if o.tlsClientCA != "" {
			return nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key (client certificates are checked only over TLS)")
		}
		return nil, nil
	case o.tlsKey == "":
		return nil, fmt.Errorf("--tls-cert %s needs --tls-key, the file of its private key", o.tlsCert)
	case o.tlsCert == "":
		return nil, fmt.Errorf("--tls-key %s needs --tls-cert, the file of its certificate", o.tlsKey)
	case network != "tcp":
		return nil, fmt.Errorf("TLS (--tls-cert) needs --network tcp and a host:port --addr, not %s: a unix socket is local, its clients are checked by the socket file's permissions", network)
	}
	certPEM, certs, err := readPEM("--tls-cert", o.tlsCert, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(certs[0].Bytes)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s: %w", o.tlsCert, err)
	}
	keyPEM, _, err := readPEM("--tls-key", o.tlsKey, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("--tls-key %s with --tls-cert %s: %w", o.tlsKey, o.tlsCert, err)
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("--tls-cert %s: the certificate expired at %s", o.tlsCert, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("--tls-cert %s: the certificate is not valid before %s", o.tlsCert, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.tlsClientCA != "" {
		_, cas, err := readPEM("--tls-client-ca", o.tlsClientCA, "CERTIFICATE")
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		for _, b := range cas {
			ca, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("--tls-client-ca %s: %w", o.tlsClientCA, err)
			}
			pool.AddCert(ca)
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = pool
	}
	return cfg, nil
}

// readPEM reads the PEM file given as flag and returns its content and
// its blocks whose type ends in kind ("CERTIFICATE", "PRIVATE KEY"),
// failing if there is none.
func readPEM(flag, path, kind string) ([]byte, []*pem.Block, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return nil, nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	var blocks []*pem.Block
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if strings.HasSuffix(blk.Type, kind) {
			blocks = append(blocks, blk)
		}
	}
	if len(blocks) == 0 {
		return nil, nil, fmt.Errorf("%s %s: no PEM %s block in it", flag, path, kind)
	}
	return b, blocks, nil
}

// certNames returns the names a client can check the certificate against.
func certNames(c *x509.Certificate) []string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// printTLSHowTo prints the TLS settings and how to connect over TLS.
func printTLSHowTo(w io.Writer, o serveOpts, cfg *tls.Config, keyFile, addr string) {
	leaf := cfg.Certificates[0].Leaf
	if leaf == nil { // X509KeyPair sets it; it was parsed already
		leaf, _ = x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	}
	names := certNames(leaf)
	forNames, serverName := "no DNS or IP names (clients cannot check it by name)", ""
	if len(names) > 0 {
		forNames = strings.Join(names, ", ")
		serverName = fmt.Sprintf(`
	// If the host dialled is not a name of the certificate, set one:
	// cfg.ServerName = %q`, names[0])
	}
	fmt.Fprintf(w, "tls certificate %s for %s, valid until %s\n", o.tlsCert, forNames, leaf.NotAfter.UTC().Format(time.RFC3339))
	clientCert := ""
	if o.tlsClientCA != "" {
		fmt.Fprintf(w, "tls client certificates required, signed by a CA in %s\n", o.tlsClientCA)
		clientCert = fmt.Sprintf(`
	// A client certificate signed by a CA in %s:
	cert, err := tls.LoadX509KeyPair("client.pem", "client-key.pem")
	cfg.Certificates = []tls.Certificate{cert}`, o.tlsClientCA)
	}
	fmt.Fprintf(w, `connect from Go, over TLS (manager.TLS):

	key, err := os.ReadFile(%q)
	key = bytes.TrimSuffix(key, []byte("\n"))
	// Trust the server's certificate, or the CA that signed it:
	ca, err := os.ReadFile(%q)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}%s%s
	c, err := manager.Connect(ctx, "tcp", %q, manager.Authkey(key), manager.TLS(cfg))
	defer c.Close()
	d, err := manager.NewDict[string, int](ctx, c)

stop with SIGINT or SIGTERM
`, keyFile, o.tlsCert, serverName, clientCert, addr)
}
