// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/multiproc/multiproc/cluster"
	"github.com/spf13/cobra"
)

type clusterStatusOpts struct {
	url     string
	creds   cluster.Credentials
	asJSON  bool
	timeout time.Duration
}

func clusterStatusCmd() *cobra.Command {
	var o clusterStatusOpts
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a cluster's task stream, callers and agents",
		Long: `status connects to a cluster's NATS servers and shows the task stream (chunks
queued, bytes, replicas), each build's chunks pending, held by agents and
redelivered, the live callers, and every live agent: host, pid, build,
capacity, in flight, done, failed, redelivered. Agents of a build that no
live caller runs are listed as mismatched: they receive nothing.

--url defaults to $MULTIPROC_CLUSTER; the credentials default to the
agents' environment variables (MULTIPROC_CLUSTER_TOKEN, _USER, _PASSWORD,
_CREDS, _NKEY, _TLS_CA, _TLS_CERT, _TLS_KEY).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			return runClusterStatus(ctx, cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	c := &o.creds
	env := os.Getenv
	f.StringVar(&o.url, "url", env(cluster.EnvCluster), "NATS URL(s) of the cluster (default $"+cluster.EnvCluster+")")
	f.StringVar(&c.Token, "token", env(cluster.EnvToken), "token (default $"+cluster.EnvToken+")")
	f.StringVar(&c.User, "user", env(cluster.EnvUser), "user (default $"+cluster.EnvUser+")")
	f.StringVar(&c.Password, "password", env(cluster.EnvPassword), "password (default $"+cluster.EnvPassword+")")
	f.StringVar(&c.CredsFile, "creds", env(cluster.EnvCreds), "creds file (default $"+cluster.EnvCreds+")")
	f.StringVar(&c.NkeyFile, "nkey", env(cluster.EnvNkey), "nkey seed file (default $"+cluster.EnvNkey+")")
	f.StringVar(&c.CAFile, "tls-ca", env(cluster.EnvTLSCA), "PEM CA of the servers' certificates (default $"+cluster.EnvTLSCA+")")
	f.StringVar(&c.CertFile, "tls-cert", env(cluster.EnvTLSCert), "PEM client certificate (default $"+cluster.EnvTLSCert+")")
	f.StringVar(&c.KeyFile, "tls-key", env(cluster.EnvTLSKey), "PEM key of --tls-cert (default $"+cluster.EnvTLSKey+")")
	f.BoolVar(&o.asJSON, "json", false, "print the status as JSON")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for the servers")
	return cmd
}

func runClusterStatus(ctx context.Context, w io.Writer, o clusterStatusOpts) error {
	if o.url == "" {
		return fmt.Errorf("cluster status: no URL: give --url or set %s", cluster.EnvCluster)
	}
	st, err := cluster.ReadStatus(ctx, o.url, o.creds)
	if err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	if o.asJSON {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(st)
	}
	fmt.Fprintf(w, "stream: %d chunks queued, %d bytes, %d replicas\n", st.Messages, st.Bytes, st.Replicas)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(st.Builds) > 0 {
		fmt.Fprintln(tw, "BUILD\tPENDING\tHELD\tREDELIVERED")
		for _, b := range st.Builds {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", b.Build, b.Pending, b.Held, b.Redelivered)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "callers: %d\n", len(st.Callers))
	if len(st.Callers) > 0 {
		fmt.Fprintln(tw, "CALLER\tHOST\tPID\tBUILD")
		for _, c := range st.Callers {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", c.ID, c.Host, c.Pid, c.Build)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "agents: %d\n", len(st.Agents))
	if len(st.Agents) > 0 {
		fmt.Fprintln(tw, "AGENT\tHOST\tPID\tBUILD\tCAPACITY\tIN FLIGHT\tDONE\tFAILED\tREDELIVERED\tMATCH")
		for _, a := range st.Agents {
			match := "yes"
			if !a.Match {
				match = "no"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", a.ID, a.Host, a.Pid, a.Build, a.Capacity, a.InFlight, a.Done, a.Failed, a.Redelivered, match)
		}
		tw.Flush()
	}
	for _, a := range st.Mismatched {
		fmt.Fprintf(w, "mismatch: agent %s on %s (pid %d) runs build %s, which no live caller runs: it receives nothing\n", a.ID, a.Host, a.Pid, a.Build)
	}
	return nil
}
