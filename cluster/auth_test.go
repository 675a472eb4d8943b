// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/nats-io/nats.go"
)

// TestWrongCredentialsAgentRefused: an agent (a separate process) with a
// wrong token, or none, is refused by the server, says so and exits; the
// Map queued meanwhile is taken by none of them, and completes once an
// agent with the right token joins.
func TestWrongCredentialsAgentRefused(t *testing.T) {
	p := newPool(t, Agents(0), Listen("127.0.0.1:0"), Auth(Credentials{Token: "right-token"}))
	if _, err := nats.Connect(p.URL(), nats.Token("wrong-token")); !isAuthError(err) {
		t.Fatalf("a plain client with a wrong token: err = %v, want an authorization violation", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	type res struct {
		v   []int
		err error
	}
	done := make(chan res, 1)
	go func() {
		v, err := square.Map(ctx, p, ints(50))
		done <- res{v, err}
	}()
	for _, env := range [][]string{{EnvToken + "=wrong-token"}, nil} {
		cmd := envAgentCmd(t, p.URL(), "1")
		cmd.Env = append(cmd.Env, env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err == nil {
			t.Fatalf("agent with %v exited 0; want a refusal", env)
		}
		if !strings.Contains(stderr.String(), "refused the credentials") {
			t.Fatalf("agent with %v: stderr does not say it was refused:\n%s", env, stderr.String())
		}
	}
	select {
	case r := <-done:
		t.Fatalf("the Map ended with no agent admitted: %v, %v", r.v, r.err)
	default:
	}
	if a := p.Agents(); len(a) != 0 {
		t.Fatalf("agents seen: %+v", a)
	}
	good := envAgentCmd(t, p.URL(), "1")
	good.Env = append(good.Env, EnvToken+"=right-token")
	startCmd(t, good)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	want := make([]int, 50)
	for i := range want {
		want[i] = i * i
	}
	if d := cmp.Diff(want, r.v); d != "" {
		t.Fatal(d)
	}
}

// TestTLSServer: the embedded server requires TLS and a client
// certificate; a plain client, and a TLS client without a certificate,
// cannot connect; an agent process given the CA and its certificate
// through the environment runs the Map.
func TestTLSServer(t *testing.T) {
	f := mptest.NewTLSCerts(t).WriteFiles(t, t.TempDir())
	p := newPool(t, Agents(0), Listen("127.0.0.1:0"),
		Auth(Credentials{Token: "tok", CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey}),
		ServerTLS(f.ServerCert, f.ServerKey, f.CA))
	if nc, err := nats.Connect(p.URL(), nats.Token("tok")); err == nil {
		nc.Close()
		t.Fatal("a plain client connected to the TLS server")
	}
	if nc, err := nats.Connect(p.URL(), nats.Token("tok"), nats.RootCAs(f.CA)); err == nil {
		nc.Close()
		t.Fatal("a TLS client without a client certificate connected")
	}
	nc, err := nats.Connect(p.URL(), nats.Token("tok"), nats.RootCAs(f.CA), nats.ClientCert(f.ClientCert, f.ClientKey))
	if err != nil {
		t.Fatalf("a TLS client with its certificate: %v", err)
	}
	nc.Close()

	agent := envAgentCmd(t, p.URL(), "2")
	agent.Env = append(agent.Env, EnvToken+"=tok", EnvTLSCA+"="+f.CA, EnvTLSCert+"="+f.ClientCert, EnvTLSKey+"="+f.ClientKey)
	startCmd(t, agent)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	got, err := square.Map(ctx, p, ints(40))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != i*i {
			t.Fatalf("result %d = %d", i, v)
		}
	}
}

// TestTLSLocalAgents: local agents reach a TLS server with the CA and
// client certificate of Auth.
func TestTLSLocalAgents(t *testing.T) {
	f := mptest.NewTLSCerts(t).WriteFiles(t, t.TempDir())
	p := newPool(t, Agents(1), Auth(Credentials{User: "u", Password: "p", CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey}),
		ServerTLS(f.ServerCert, f.ServerKey, f.CA))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v, err := square.Apply(ctx, p, 7)
	if err != nil || v != 49 {
		t.Fatalf("Apply = %d, %v", v, err)
	}
}

// TestListenBeyondLoopbackNeedsCredentials: an embedded server refuses
// to listen on every interface without credentials.
func TestListenBeyondLoopbackNeedsCredentials(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := New(ctx, Agents(0), Listen("0.0.0.0:0"))
	if !errors.Is(err, ErrNoCredentials) {
		if p != nil {
			p.Close()
		}
		t.Fatalf("New(Listen(0.0.0.0:0)) without credentials: err = %v, want ErrNoCredentials", err)
	}
	p = newPool(t, Agents(0), Listen("0.0.0.0:0"), Auth(Credentials{Token: "t"}))
	if p.URL() == "" {
		t.Fatal("no URL")
	}
	if _, err := New(ctx, Auth(Credentials{Token: "t", User: "u", Password: "p"})); err == nil {
		t.Fatal("a token and a user both accepted")
	}
}

func TestCredentialsFromEnv(t *testing.T) {
	t.Setenv(EnvUser, "u")
	if _, err := CredentialsFromEnv(); err == nil {
		t.Fatal("a user without a password accepted")
	}
	t.Setenv(EnvPassword, "p")
	c, err := CredentialsFromEnv()
	if err != nil || c.User != "u" || c.Password != "p" {
		t.Fatalf("CredentialsFromEnv = %+v, %v", c, err)
	}
	t.Setenv(EnvTLSCA, "/nonexistent/ca.pem")
	if _, err := CredentialsFromEnv(); err == nil {
		t.Fatal("a missing CA file accepted")
	}
}
