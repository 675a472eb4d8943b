// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
)

// pyPeer is a CPython multiprocessing.connection peer: a Listener (argv
// "listen") that accepts one connection, or a Client ("dial"). It prints
// "READY <address>" once listening (or connected), echoes every frame until
// end of stream, and prints "AUTHFAIL" if the handshake fails.
const pyPeer = `
import sys
from multiprocessing.connection import Listener, Client, AuthenticationError
role, family, addr, key = sys.argv[1:5]
key = None if key == '-' else key.encode()
if family == 'AF_INET':
    host, port = addr.rsplit(':', 1)
    addr = (host, int(port))
try:
    if role == 'listen':
        l = Listener(addr, family=family, authkey=key)
        a = l.address
        print('READY', '%s:%d' % a if family == 'AF_INET' else a, flush=True)
        c = l.accept()
    else:
        c = Client(addr, family=family, authkey=key)
        print('READY', flush=True)
except AuthenticationError as e:
    print('AUTHFAIL', e, flush=True)
    sys.exit(0)
while True:
    try:
        b = c.recv_bytes()
    except EOFError:
        break
    c.send_bytes(b)
`

// pythons returns the CPython versions to test against: the default
// python3 ("" ) and each pyenv version >= 3.11 installed.
func pythons(t *testing.T) []string {
	mptest.Python(t)
	mptest.RequirePythonVersions(t)
	vs := []string{""}
	for _, v := range mptest.PythonVersions() {
		if slices.Contains(mptest.CIPythonVersions, v) || strings.HasPrefix(v, "3.14") {
			vs = append(vs, v)
		}
	}
	return vs
}

type pyProc struct {
	cmd *exec.Cmd
	out *bufio.Reader
}

func startPy(t *testing.T, version string, args ...string) *pyProc {
	t.Helper()
	cmd := exec.Command(mptest.Python(t), append([]string{"-c", pyPeer}, args...)...)
	if version != "" {
		cmd.Env = append(os.Environ(), "PYENV_VERSION="+version)
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &pyProc{cmd: cmd, out: bufio.NewReader(out)}
}

// line reads the peer's next status line.
func (p *pyProc) line(t *testing.T) string {
	t.Helper()
	l, err := p.out.ReadString('\n')
	if err != nil {
		t.Fatalf("python peer: %v", err)
	}
	return strings.TrimSpace(l)
}

func (p *pyProc) wait(t *testing.T) {
	t.Helper()
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("python peer: %v", err)
	}
}

var interopMessages = [][]byte{{}, []byte("0123456789abcdef"), bytes.Repeat([]byte("mp"), 8<<20)}

func exchange(t *testing.T, c *Conn) {
	t.Helper()
	ctx := context.Background()
	for _, m := range interopMessages {
		if err := c.SendBytes(ctx, m); err != nil {
			t.Fatal(err)
		}
		got, err := c.RecvBytes(ctx)
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("%d-byte echo: got %d bytes, %v", len(m), len(got), err)
		}
	}
}

func pyFamily(network string) string {
	if network == "tcp" {
		return "AF_INET"
	}
	return "AF_UNIX"
}

func pyVersionName(v string) string {
	if v == "" {
		return "default"
	}
	return v
}

// Go Listener <-> CPython Client, and CPython Listener <-> Go Dial, with
// and without an authkey, over unix and TCP sockets.
func TestInteropPython(t *testing.T) {
	for _, v := range pythons(t) {
		for _, network := range []string{"unix", "tcp"} {
			for _, key := range []string{"", "secret"} {
				if v != "" && key == "" {
					continue // framing is the same in every version; the handshake is not
				}
				name := fmt.Sprintf("%s/%s/key=%q", pyVersionName(v), network, key)
				var lopts []ListenOption
				pykey := "-"
				if key != "" {
					lopts = append(lopts, Authkey([]byte(key)))
					pykey = key
				}
				t.Run(name+"/go-listens", func(t *testing.T) {
					ctx := context.Background()
					addr := filepath.Join(t.TempDir(), "s")
					if network == "tcp" {
						addr = "127.0.0.1:0"
					}
					l := mustListen(t, network, addr, lopts...)
					p := startPy(t, v, "dial", pyFamily(network), l.Addr().String(), pykey)
					defer p.wait(t)
					c, err := l.Accept(ctx)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					if got := p.line(t); got != "READY" {
						t.Fatalf("python: %q", got)
					}
					exchange(t, c)
				})
				t.Run(name+"/python-listens", func(t *testing.T) {
					addr := filepath.Join(t.TempDir(), "s")
					if network == "tcp" {
						addr = "127.0.0.1:0"
					}
					p := startPy(t, v, "listen", pyFamily(network), addr, pykey)
					defer p.wait(t)
					ready := p.line(t)
					a, ok := strings.CutPrefix(ready, "READY ")
					if !ok {
						t.Fatalf("python: %q", ready)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					c, err := Dial(ctx, network, a, lopts...)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					exchange(t, c)
				})
			}
		}
	}
}

// Wrong keys fail on both sides against CPython; strict mode refuses
// CPython 3.11's HMAC-MD5 answer and accepts 3.12+.
func TestInteropPythonAuthFailures(t *testing.T) {
	for _, v := range pythons(t) {
		t.Run(pyVersionName(v)+"/wrong-key", func(t *testing.T) {
			l := mustListen(t, "unix", filepath.Join(t.TempDir(), "s"), Authkey([]byte("right")))
			p := startPy(t, v, "dial", "AF_UNIX", l.Addr().String(), "wrong")
			defer p.wait(t)
			if _, err := l.Accept(context.Background()); !errors.Is(err, ErrAuthentication) {
				t.Errorf("Go Accept: %v", err)
			}
			if got := p.line(t); !strings.HasPrefix(got, "AUTHFAIL") {
				t.Errorf("python client: %q", got)
			}

			p2 := startPy(t, v, "listen", "AF_UNIX", filepath.Join(t.TempDir(), "s2"), "right")
			defer p2.wait(t)
			a, _ := strings.CutPrefix(p2.line(t), "READY ")
			if _, err := Dial(context.Background(), "unix", a, Authkey([]byte("wrong"))); !errors.Is(err, ErrAuthentication) {
				t.Errorf("Go Dial: %v", err)
			}
			if got := p2.line(t); !strings.HasPrefix(got, "AUTHFAIL") {
				t.Errorf("python listener: %q", got)
			}
		})
		t.Run(pyVersionName(v)+"/strict", func(t *testing.T) {
			out, err := exec.Command(mptest.Python(t), "-c", "import sys; print(sys.version_info[:2] >= (3, 12))").Output()
			if v != "" {
				cmd := exec.Command(mptest.Python(t), "-c", "import sys; print(sys.version_info[:2] >= (3, 12))")
				cmd.Env = append(os.Environ(), "PYENV_VERSION="+v)
				out, err = cmd.Output()
			}
			if err != nil {
				t.Fatal(err)
			}
			modern := strings.TrimSpace(string(out)) == "True"
			l := mustListen(t, "unix", filepath.Join(t.TempDir(), "s"), Authkey([]byte("k")), Strict())
			p := startPy(t, v, "dial", "AF_UNIX", l.Addr().String(), "k")
			defer p.wait(t)
			c, err := l.Accept(context.Background())
			if modern {
				if err != nil {
					t.Fatalf("strict Accept of CPython 3.12+: %v", err)
				}
				defer c.Close()
				if got := p.line(t); got != "READY" {
					t.Fatalf("python: %q", got)
				}
				exchange(t, c)
				return
			}
			if !errors.Is(err, ErrAuthentication) {
				t.Errorf("strict Accept of a legacy client: %v", err)
			}
			if got := p.line(t); !strings.HasPrefix(got, "AUTHFAIL") {
				t.Errorf("python client: %q", got)
			}
		})
	}
}
