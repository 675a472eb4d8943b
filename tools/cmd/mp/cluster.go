// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/multiproc/multiproc/cluster"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func clusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Run and inspect the NATS servers of a cluster pool",
	}
	cmd.AddCommand(clusterServeCmd(), clusterStatusCmd())
	return cmd
}

type clusterServeOpts struct {
	cfg      cluster.ServerConfig
	routes   string
	logLevel string
}

func clusterServeCmd() *cobra.Command {
	var o clusterServeOpts
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a NATS server with JetStream for cluster pools until SIGINT or SIGTERM",
		Long: `serve runs a standalone NATS server with JetStream (the nats-server library,
in this process) for cluster pools (package cluster): callers use
cluster.URL, agents MULTIPROC_CLUSTER with the URL it prints.

--listen is the clients' host:port (default 127.0.0.1:4222; port 0 picks a
free one). --store is JetStream's store directory (default: a new temporary
directory, removed on exit: give one to keep the streams across restarts).

Credentials: --token, or --user and --password; by default they are read
from MULTIPROC_CLUSTER_TOKEN, MULTIPROC_CLUSTER_USER and
MULTIPROC_CLUSTER_PASSWORD (a flag's value is visible to other users in the
process list, the environment is not). Listening beyond loopback without
them is refused. --tls-cert and --tls-key (PEM) make the server require TLS;
with --tls-client-ca every client must present a certificate signed by it.

A cluster: give every server a --name, the same --cluster-name, a
--cluster-listen host:port for routes, and --routes with every server's
cluster address, its own included (comma-separated; JetStream needs routes
on every server). Routes authenticate with the same credentials. On three
servers or more, the pool's stream and status bucket keep three replicas.

--sync-interval sets how often JetStream flushes to disk (default: the
server's two minutes), --sync-always an fsync per write.

serve prints the client URL and how agents join, then runs until SIGINT or
SIGTERM and shuts down cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runClusterServe(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	c := &o.cfg
	f.StringVar(&c.Listen, "listen", "127.0.0.1:4222", "clients' host:port (port 0: a free one)")
	f.StringVar(&c.StoreDir, "store", "", "JetStream store directory (default: a temporary directory removed on exit)")
	f.StringVar(&c.Name, "name", "", "server name, unique in the cluster (default: host name and port)")
	f.StringVar(&c.ClusterName, "cluster-name", "multiproc", "the cluster's name (the same on every server)")
	f.StringVar(&c.ClusterListen, "cluster-listen", "", "host:port for routes from the other servers (none: a single server)")
	f.StringVar(&o.routes, "routes", "", "comma-separated cluster addresses (host:port) of every server, this one's included")
	f.StringVar(&c.Credentials.Token, "token", os.Getenv(cluster.EnvToken), "token clients must present (default $"+cluster.EnvToken+")")
	f.StringVar(&c.Credentials.User, "user", os.Getenv(cluster.EnvUser), "user clients must present (default $"+cluster.EnvUser+")")
	f.StringVar(&c.Credentials.Password, "password", os.Getenv(cluster.EnvPassword), "password of --user (default $"+cluster.EnvPassword+")")
	f.StringVar(&c.TLSCert, "tls-cert", "", "PEM file: serve TLS with this certificate (needs --tls-key)")
	f.StringVar(&c.TLSKey, "tls-key", "", "PEM file: the private key of --tls-cert")
	f.StringVar(&c.TLSClientCA, "tls-client-ca", "", "PEM file: require client certificates signed by this CA (needs --tls-cert)")
	f.DurationVar(&c.SyncInterval, "sync-interval", 0, "how often JetStream flushes to disk (default: the server's 2m)")
	f.BoolVar(&c.SyncAlways, "sync-always", false, "flush every write to disk before acknowledging it")
	f.StringVar(&o.logLevel, "log", "warn", "log level on standard error: debug, info, warn, error")
	return cmd
}

func runClusterServe(ctx context.Context, w, errw io.Writer, o clusterServeOpts) error {
	cfg := o.cfg
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") || (cfg.TLSClientCA != "" && cfg.TLSCert == "") {
		return fmt.Errorf("cluster serve: --tls-cert and --tls-key go together, and --tls-client-ca needs them")
	}
	if cfg.Credentials.Token != "" && cfg.Credentials.User != "" {
		// The environment may hold both; a flag wins over the other's
		// environment default.
		return fmt.Errorf("cluster serve: give a token or a user and password, not both")
	}
	for _, r := range strings.Split(o.routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			cfg.Routes = append(cfg.Routes, r)
		}
	}
	if cfg.ClusterListen == "" && len(cfg.Routes) == 0 {
		cfg.ClusterName = ""
	}
	var level zapcore.Level
	if err := level.Set(o.logLevel); err != nil {
		return fmt.Errorf("cluster serve: --log %q: %w", o.logLevel, err)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.Logger = zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(zapcore.AddSync(errw)), level))
	defer cfg.Logger.Sync()
	if cfg.StoreDir == "" {
		dir, err := os.MkdirTemp("", "mp-cluster-")
		if err != nil {
			return fmt.Errorf("cluster serve: %w", err)
		}
		defer os.RemoveAll(dir)
		cfg.StoreDir = dir
	}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	srv, err := cluster.StartServer(sctx, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("cluster serve: %w", err)
	}
	defer srv.Close()
	url := srv.ClientURL()
	fmt.Fprintf(w, "url: %s\n", url)
	fmt.Fprintf(w, "store: %s\n", cfg.StoreDir)
	if a := srv.ClusterAddr(); a != "" {
		fmt.Fprintf(w, "cluster: %s (name %s)\n", a, cfg.ClusterName)
	}
	join := cluster.EnvCluster + "=" + url
	switch {
	case cfg.Credentials.Token != "":
		join += " " + cluster.EnvToken + "=…"
	case cfg.Credentials.User != "":
		join += " " + cluster.EnvUser + "=" + cfg.Credentials.User + " " + cluster.EnvPassword + "=…"
	}
	if cfg.TLSCert != "" {
		join += " " + cluster.EnvTLSCA + "=ca.pem"
		if cfg.TLSClientCA != "" {
			join += " " + cluster.EnvTLSCert + "=client.pem " + cluster.EnvTLSKey + "=client-key.pem"
		}
	}
	fmt.Fprintf(w, "agents join with: %s ./yourprogram\n", join)
	fmt.Fprintf(w, "callers use: cluster.New(ctx, cluster.URL(%q), cluster.Auth(...))\n", url)
	fmt.Fprintln(w, "stop with SIGINT or SIGTERM")
	<-ctx.Done()
	srv.Close()
	fmt.Fprintln(w, "server shut down")
	return nil
}
