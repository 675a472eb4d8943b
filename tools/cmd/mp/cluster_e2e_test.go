// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/cluster"
	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/pool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// clusterSquare is the task the cluster tests' agents (this test binary)
// run.
var clusterSquare = pool.Register("mp.e2e.cluster.square", func(ctx context.Context, x int) (int, error) { return x * x, nil })

// gatedArg is the argument of clusterGatedSquare.
type gatedArg struct {
	X    int
	Gate string
}

// gateFrom is the first X whose clusterGatedSquare waits for its gate.
const gateFrom = 50

// clusterGatedSquare takes 20ms a task; from X = gateFrom on, it then
// waits until the file Gate exists (or its context ends). A Map over
// gatedArgs(100) cannot end before the test opens the gate, and gets
// past 20 results whatever the machine's speed: a kill that must come in
// the middle of the Map does, with no timing in it.
var clusterGatedSquare = pool.Register("mp.e2e.cluster.gatedsquare", func(ctx context.Context, a gatedArg) (int, error) {
	time.Sleep(20 * time.Millisecond)
	if a.X >= gateFrom {
		if err := mptest.WaitGate(ctx, a.Gate); err != nil {
			return 0, err
		}
	}
	return a.X * a.X, nil
})

// gatedArgs returns n arguments of clusterGatedSquare (X = 0..n-1) and
// the gate the test opens with mptest.OpenGate.
func gatedArgs(t *testing.T, n int) ([]gatedArg, string) {
	gate := filepath.Join(t.TempDir(), "gate")
	in := make([]gatedArg, n)
	for i := range in {
		in[i] = gatedArg{X: i, Gate: gate}
	}
	return in, gate
}

// clusterServe starts mp cluster serve with args and returns it, its
// client URL and the rest of its standard output.
func clusterServe(t *testing.T, bin string, env []string, args ...string) (*exec.Cmd, string, io.Reader) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"cluster", "serve"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	var lines []string
	url := ""
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if u, ok := strings.CutPrefix(sc.Text(), "url: "); ok {
			url = u
		}
		if strings.HasPrefix(sc.Text(), "stop with") {
			if url == "" {
				t.Fatalf("mp cluster serve printed no url: %q", lines)
			}
			return cmd, url, stdout
		}
	}
	t.Fatalf("mp cluster serve ended before it was ready: %q", lines)
	return nil, "", nil
}

func stopClusterServe(t *testing.T, cmd *exec.Cmd, stdout io.Reader) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stdout)
	if err := cmd.Wait(); err != nil {
		t.Errorf("mp cluster serve after SIGTERM: %v, want exit 0", err)
	}
	if string(rest) != "server shut down\n" {
		t.Errorf("mp cluster serve printed %q after SIGTERM", rest)
	}
}

// TestMPCluster builds mp and runs a cluster pool's Map through mp
// cluster serve (a separate process) with an agent process, then reads
// mp cluster status.
func TestMPCluster(t *testing.T) {
	mptest.CheckChildren(t)
	bin := filepath.Join(t.TempDir(), "mp")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Run("serve and status", func(t *testing.T) { testClusterServe(t, bin) })
	t.Run("three servers", func(t *testing.T) { testClusterThree(t, bin) })
	t.Run("tls", func(t *testing.T) { testClusterServeTLS(t, bin) })
	t.Run("restart", func(t *testing.T) { testClusterRestart(t, bin) })
	t.Run("no quorum", func(t *testing.T) { testClusterNoQuorum(t, bin) })
	t.Run("bad input", func(t *testing.T) {
		mpFails(t, bin, "needs credentials", "cluster", "serve", "--listen", "0.0.0.0:0")
		mpFails(t, bin, "--tls-cert and --tls-key", "cluster", "serve", "--listen", "127.0.0.1:0", "--tls-cert", "x.pem")
		mpFails(t, bin, "no URL", "cluster", "status", "--url", "")
	})
}

func testClusterServe(t *testing.T, bin string) {
	store := t.TempDir()
	srv, url, rest := clusterServe(t, bin, []string{cluster.EnvToken + "=s3cret"}, "--listen", "127.0.0.1:0", "--store", store)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p, err := cluster.New(ctx, cluster.URL(url), cluster.Auth(cluster.Credentials{Token: "s3cret"}), cluster.Agents(1), cluster.AgentWorkers(2))
	if err != nil {
		t.Fatal(err)
	}
	xs := make([]int, 200)
	for i := range xs {
		xs[i] = i
	}
	got, err := clusterSquare.Map(ctx, p, xs)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != i*i {
			t.Fatalf("result %d = %d", i, v)
		}
	}
	pids := p.LocalAgentPids()
	if len(pids) != 1 {
		t.Fatalf("local agents %v", pids)
	}
	// The agent's status entry says what it did: wait for its next
	// report to count the Map's chunks.
	var out string
	deadline := time.Now().Add(60 * time.Second)
	for {
		out = mpOK(t, bin, "cluster", "status", "--url", url, "--token", "s3cret")
		if strings.Contains(out, "agents: 1") && doneOf(out) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mp cluster status never showed the agent's work:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, want := range []string{"stream: 0 chunks queued", "callers: 1", "agents: 1", " " + strconv.Itoa(pids[0]) + " ", cluster.Namespace(), "CAPACITY"} {
		if !strings.Contains(out, want) {
			t.Errorf("mp cluster status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "mismatch") {
		t.Errorf("mp cluster status reports a mismatch:\n%s", out)
	}
	t.Logf("mp cluster status:\n%s", out)
	mpFails(t, bin, "Authorization Violation", "cluster", "status", "--url", url, "--token", "wrong")
	p.Close()
	stopClusterServe(t, srv, rest)
	if _, err := os.Stat(filepath.Join(store, "jetstream")); err != nil {
		t.Errorf("the store directory given was not used: %v", err)
	}
}

// testClusterThree runs three mp cluster serve processes routed into one
// cluster on this machine (the walkthrough of docs/cluster.md): a Map
// through them completes, and the stream has three replicas.
func testClusterThree(t *testing.T, bin string) {
	var routes []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, l.Addr().String())
		l.Close() // the server listens there in a moment
	}
	env := []string{cluster.EnvToken + "=s3cret"}
	var urls []string
	type served struct {
		cmd  *exec.Cmd
		rest io.Reader
	}
	var servers []served
	for i := range 3 {
		cmd, url, rest := clusterServe(t, bin, env, "--name", "n"+strconv.Itoa(i), "--listen", "127.0.0.1:0", "--store", t.TempDir(),
			"--cluster-listen", routes[i], "--routes", strings.Join(routes, ","), "--log", "error")
		urls = append(urls, url)
		servers = append(servers, served{cmd, rest})
	}
	url := strings.Join(urls, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// JetStream elects its meta leader once the routes are up: New waits
	// for it.
	p, err := cluster.New(ctx, cluster.URL(url), cluster.Auth(cluster.Credentials{Token: "s3cret"}), cluster.Agents(1))
	if err != nil {
		t.Fatal(err)
	}
	xs := make([]int, 100)
	for i := range xs {
		xs[i] = i
	}
	got, err := clusterSquare.Map(ctx, p, xs)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != i*i {
			t.Fatalf("result %d = %d", i, v)
		}
	}
	out := mpOK(t, bin, "cluster", "status", "--url", url, "--token", "s3cret")
	if !strings.Contains(out, "3 replicas") || !strings.Contains(out, "agents: 1") {
		t.Errorf("mp cluster status on three servers:\n%s", out)
	}

	// Failover: SIGKILL the server that leads the task stream in the
	// middle of a Map; it completes without a restart, nothing lost.
	nc, err := nats.Connect(url, nats.Token("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	type res struct {
		v   []int
		err error
	}
	gin, gate := gatedArgs(t, len(xs))
	done := make(chan res, 1)
	progress := make(chan int, 1024)
	go func() {
		v, err := clusterGatedSquare.Map(ctx, p, gin, pool.Chunksize(1), pool.OnProgress(func(pr pool.Progress) {
			select {
			case progress <- pr.Done:
			default:
			}
		}))
		done <- res{v, err}
	}()
	for n := 0; n < 20; {
		select {
		case n = <-progress:
		case r := <-done:
			t.Fatalf("the Map ended before the failover: %v", r.err)
		}
	}
	s, err := js.Stream(ctx, "MPC_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	leader := s.CachedInfo().Cluster.Leader
	killed := -1
	for i := range servers {
		if leader == "n"+strconv.Itoa(i) {
			killed = i
		}
	}
	if killed < 0 {
		t.Fatalf("the stream's leader %q is none of the servers", leader)
	}
	servers[killed].cmd.Process.Kill()
	servers[killed].cmd.Wait()
	killedAt := time.Now()
	mptest.OpenGate(t, gate)
	r := <-done
	if r.err != nil {
		t.Fatalf("Map after the stream leader %s was killed: %v", leader, r.err)
	}
	for i, v := range r.v {
		if v != i*i {
			t.Fatalf("result %d = %d after the failover", i, v)
		}
	}
	t.Logf("stream leader %s killed; the Map completed %v later", leader, time.Since(killedAt).Round(time.Millisecond))
	p.Close()
	for i, s := range servers {
		if i != killed {
			stopClusterServe(t, s.cmd, s.rest)
		}
	}
}

// testClusterServeTLS: mp cluster serve with TLS and client certificates
// and a user and password; an agent process connects with the CA and its
// certificate (Auth); mp cluster status works with them, and fails
// without the CA or without the client certificate.
func testClusterServeTLS(t *testing.T, bin string) {
	f := mptest.NewTLSCerts(t).WriteFiles(t, t.TempDir())
	srv, url, rest := clusterServe(t, bin, nil, "--listen", "127.0.0.1:0", "--user", "ops", "--password", "pw",
		"--tls-cert", f.ServerCert, "--tls-key", f.ServerKey, "--tls-client-ca", f.CA, "--log", "error")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	creds := cluster.Credentials{User: "ops", Password: "pw", CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey}
	p, err := cluster.New(ctx, cluster.URL(url), cluster.Auth(creds), cluster.Agents(1))
	if err != nil {
		t.Fatal(err)
	}
	v, err := clusterSquare.Apply(ctx, p, 12)
	if err != nil || v != 144 {
		t.Fatalf("Apply over TLS = %d, %v", v, err)
	}
	base := []string{"cluster", "status", "--url", url, "--user", "ops", "--password", "pw"}
	out := mpOK(t, bin, append(base, "--tls-ca", f.CA, "--tls-cert", f.ClientCert, "--tls-key", f.ClientKey)...)
	if !strings.Contains(out, "agents: 1") {
		t.Errorf("mp cluster status over TLS:\n%s", out)
	}
	if _, _, code := mpRun(t, bin, base...); code == 0 {
		t.Error("mp cluster status without the CA connected to the TLS server")
	}
	if _, _, code := mpRun(t, bin, append(base, "--tls-ca", f.CA)...); code == 0 {
		t.Error("mp cluster status without a client certificate connected")
	}
	p.Close()
	stopClusterServe(t, srv, rest)
}

// testClusterRestart: the single file-store server is SIGKILLed in the
// middle of a Map and started again on the same address and store; the
// caller and the agent reconnect and the Map completes, every result
// correct.
func testClusterRestart(t *testing.T, bin string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	args := []string{"--listen", addr, "--store", t.TempDir(), "--token", "tok", "--log", "error"}
	srv, url, _ := clusterServe(t, bin, nil, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p, err := cluster.New(ctx, cluster.URL(url), cluster.Auth(cluster.Credentials{Token: "tok"}), cluster.Agents(1), cluster.AgentWorkers(2),
		cluster.RepublishAfter(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	xs := make([]int, 100)
	for i := range xs {
		xs[i] = i
	}
	type res struct {
		v   []int
		err error
	}
	gin, gate := gatedArgs(t, len(xs))
	done := make(chan res, 1)
	progress := make(chan int, 1024)
	go func() {
		v, err := clusterGatedSquare.Map(ctx, p, gin, pool.Chunksize(1), pool.OnProgress(func(pr pool.Progress) {
			select {
			case progress <- pr.Done:
			default:
			}
		}))
		done <- res{v, err}
	}()
	for n := 0; n < 20; {
		select {
		case n = <-progress:
		case r := <-done:
			t.Fatalf("the Map ended before the kill: %v", r.err)
		}
	}
	srv.Process.Kill()
	srv.Wait()
	killedAt := time.Now()
	mptest.OpenGate(t, gate) // the held tasks finish while the server is down
	time.Sleep(500 * time.Millisecond)
	srv2, _, rest2 := clusterServe(t, bin, nil, args...)
	r := <-done
	if r.err != nil {
		t.Fatalf("Map across the server's restart: %v", r.err)
	}
	for i, v := range r.v {
		if v != i*i {
			t.Fatalf("result %d = %d after the restart", i, v)
		}
	}
	t.Logf("server killed and restarted; the Map completed %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	// The status bucket lives in memory and died with the server: the
	// caller and the agent create it again and report themselves.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := mpOK(t, bin, "cluster", "status", "--url", url, "--token", "tok")
		if strings.Contains(out, "agents: 1") && strings.Contains(out, "callers: 1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart, mp cluster status never showed the caller and the agent:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.Close()
	stopClusterServe(t, srv2, rest2)
}

// freePorts returns n loopback addresses whose ports were free a moment
// ago.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	return addrs
}

// testClusterNoQuorum: with two of three servers stopped, a call fails
// with its context's error at its deadline instead of hanging; once they
// are back (same addresses and stores), a new Map works.
func testClusterNoQuorum(t *testing.T, bin string) {
	clients, routes, stores := freePorts(t, 3), freePorts(t, 3), []string{t.TempDir(), t.TempDir(), t.TempDir()}
	env := []string{cluster.EnvToken + "=s3cret"}
	args := func(i int) []string {
		return []string{"--name", "q" + strconv.Itoa(i), "--listen", clients[i], "--store", stores[i],
			"--cluster-listen", routes[i], "--routes", strings.Join(routes, ","), "--log", "error"}
	}
	type served struct {
		cmd  *exec.Cmd
		rest io.Reader
	}
	servers := make([]served, 3)
	var urls []string
	for i := range 3 {
		cmd, url, rest := clusterServe(t, bin, env, args(i)...)
		servers[i] = served{cmd, rest}
		urls = append(urls, url)
	}
	url := strings.Join(urls, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	p, err := cluster.New(ctx, cluster.URL(url), cluster.Auth(cluster.Credentials{Token: "s3cret"}), cluster.Agents(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if v, err := clusterSquare.Apply(ctx, p, 5); err != nil || v != 25 {
		t.Fatalf("Apply = %d, %v", v, err)
	}
	for _, i := range []int{1, 2} {
		stopClusterServe(t, servers[i].cmd, servers[i].rest)
	}
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	start := time.Now()
	_, err = clusterSquare.Map(cctx, p, []int{1, 2, 3})
	ccancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Map without quorum: err = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Fatalf("Map without quorum returned %v after its 3s deadline", d)
	} else {
		t.Logf("Map without quorum returned %v after it started (deadline 3s): %v", d.Round(time.Millisecond), err)
	}
	for _, i := range []int{1, 2} {
		cmd, _, rest := clusterServe(t, bin, env, args(i)...)
		servers[i] = served{cmd, rest}
	}
	xs := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	got, err := clusterSquare.Map(ctx, p, xs)
	if err != nil {
		t.Fatalf("Map once the servers are back: %v", err)
	}
	for i, v := range got {
		if v != xs[i]*xs[i] {
			t.Fatalf("result %d = %d", i, v)
		}
	}
	p.Close()
	for _, s := range servers {
		stopClusterServe(t, s.cmd, s.rest)
	}
}

// agentRows returns the agent table of mp cluster status output.
func agentRows(out string) string {
	_, after, _ := strings.Cut(out, "AGENT")
	return after
}

// doneOf returns the DONE column of the first agent row, or -1.
func doneOf(out string) int {
	rows := strings.Split(agentRows(out), "\n")
	if len(rows) < 2 {
		return -1
	}
	f := strings.Fields(rows[1])
	// AGENT HOST PID BUILD CAPACITY IN FLIGHT DONE: DONE is field 6.
	if len(f) < 7 {
		return -1
	}
	n, err := strconv.Atoi(f[6])
	if err != nil {
		return -1
	}
	return n
}
