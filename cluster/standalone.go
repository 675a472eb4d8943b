// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// ServerConfig configures a standalone NATS server with JetStream, one
// node of a cluster's deployment (StartServer; mp cluster serve).
type ServerConfig struct {
	// Listen is the clients' host:port (port 0: a free one). Default
	// 127.0.0.1:4222. Beyond loopback, Credentials must hold a token or
	// a user and password.
	Listen string
	// StoreDir is JetStream's store directory (required).
	StoreDir string
	// Name is the server's name, unique in its cluster (default: the
	// host name and the client port).
	Name string
	// ClusterName, ClusterListen (host:port) and Routes (host:port or
	// nats-route://host:port of every server of the cluster, this one's
	// included: JetStream needs routes on every server) form a NATS
	// cluster with the other servers; all empty: a single server. Routes
	// authenticate with the clients' user and password, or with the
	// token as the password of the user "mpc-route".
	ClusterName   string
	ClusterListen string
	Routes        []string
	// Credentials: the token or user and password clients must present.
	Credentials Credentials
	// TLS for clients: the server's certificate and key (PEM files), and
	// with ClientCA, a required client certificate signed by it.
	TLSCert, TLSKey, TLSClientCA string
	// SyncInterval, SyncAlways: how JetStream flushes to disk (see
	// the SyncInterval option).
	SyncInterval time.Duration
	SyncAlways   bool
	Logger       *zap.Logger
}

// Server is a running standalone server (StartServer).
type Server struct {
	srv *server.Server
}

// routeUser is the user name routes authenticate with when the clients
// use a token.
const routeUser = "mpc-route"

// StartServer starts a NATS server with JetStream in this process and
// waits until it accepts clients (ctx bounds that; in a cluster, it does
// not wait for the other servers).
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("cluster: StartServer: a store directory is needed")
	}
	if err := cfg.Credentials.check(); err != nil {
		return nil, err
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:4222"
	}
	host, port, err := splitListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		h, _ := os.Hostname()
		cfg.Name = h + "-" + strconv.Itoa(max(port, 0))
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	o := &server.Options{
		ServerName: cfg.Name, Host: host, Port: port,
		JetStream: true, StoreDir: cfg.StoreDir, NoSigs: true, NoLog: true,
		SyncInterval: cfg.SyncInterval, SyncAlways: cfg.SyncAlways,
	}
	if err := serverSecurity(o, cfg.Credentials, cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA); err != nil {
		return nil, err
	}
	if cfg.ClusterListen != "" || len(cfg.Routes) > 0 {
		if cfg.ClusterName == "" {
			cfg.ClusterName = "multiproc"
		}
		if cfg.ClusterListen == "" || len(cfg.Routes) == 0 {
			return nil, errors.New("cluster: StartServer: a cluster needs a cluster listen address and routes (every server's cluster address, its own included)")
		}
		ch, cp, err := splitListen(cfg.ClusterListen)
		if err != nil {
			return nil, err
		}
		o.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: ch, Port: cp}
		user, pass := cfg.Credentials.User, cfg.Credentials.Password
		if cfg.Credentials.Token != "" {
			user, pass = routeUser, cfg.Credentials.Token
		}
		if user == "" && !loopback(ch) {
			return nil, fmt.Errorf("%w: the cluster port listens on %s", ErrNoCredentials, ch)
		}
		o.Cluster.Username, o.Cluster.Password = user, pass
		for _, r := range cfg.Routes {
			u, err := routeURL(r, user, pass)
			if err != nil {
				return nil, err
			}
			o.Routes = append(o.Routes, u)
		}
	}
	srv, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("cluster: server: %w", err)
	}
	fatal := make(chan string, 1)
	srv.SetLoggerV2(&serverLog{l: log.Named("nats"), fatal: fatal}, false, false, false)
	srv.Start()
	for !srv.ReadyForConnections(100 * time.Millisecond) {
		err := ctx.Err()
		select {
		case msg := <-fatal:
			err = errors.New(msg)
		default:
		}
		if err != nil {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, fmt.Errorf("cluster: the server did not become ready: %w", err)
		}
	}
	return &Server{srv: srv}, nil
}

// splitListen parses host:port; port 0 means a free one.
func splitListen(addr string) (string, int, error) {
	h, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("cluster: listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("cluster: listen address %q: bad port", addr)
	}
	if h == "" {
		h = "0.0.0.0"
	}
	if port == 0 {
		port = -1 // any free port (nats-server's 0 means the default)
	}
	return h, port, nil
}

// routeURL makes nats-route://user:pass@host:port of a route.
func routeURL(r, user, pass string) (*url.URL, error) {
	if !strings.Contains(r, "://") {
		r = "nats-route://" + r
	}
	u, err := url.Parse(r)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("cluster: route %q: want host:port or nats-route://host:port", r)
	}
	if u.User == nil && user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u, nil
}

// ClientURL is the URL clients and agents connect to.
func (s *Server) ClientURL() string { return s.srv.ClientURL() }

// ClusterAddr is the address of the cluster port (routes), or "" for a
// single server.
func (s *Server) ClusterAddr() string {
	if a := s.srv.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Close shuts the server down and waits until it has.
func (s *Server) Close() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// Wait waits until the server has shut down.
func (s *Server) Wait() { s.srv.WaitForShutdown() }

// autoReplicas is the task stream's replicas when none is set: 3 on a
// NATS cluster of 3 or more servers (the connection's known servers: the
// URLs given and those the cluster advertises), else 1.
func autoReplicas(nc *nats.Conn) int {
	if nc.ConnectedClusterName() == "" {
		return 1
	}
	hosts := map[string]bool{}
	for _, s := range nc.Servers() {
		if u, err := url.Parse(s); err == nil {
			hosts[u.Host] = true
		}
	}
	if len(hosts) >= 3 {
		return 3
	}
	return 1
}
