// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
)

type family struct {
	network string
	address func(t *testing.T) string
}

var families = map[string]family{
	"unix": {"unix", func(t *testing.T) string { return filepath.Join(t.TempDir(), "l.sock") }},
	"abstract": {"unix", func(t *testing.T) string {
		return fmt.Sprintf("\x00mptest-%d-%d", os.Getpid(), time.Now().UnixNano())
	}},
	"abstract@": {"unix", func(t *testing.T) string {
		return fmt.Sprintf("@mptest-%d-%d", os.Getpid(), time.Now().UnixNano())
	}},
	"tcp": {"tcp", func(t *testing.T) string { return "127.0.0.1:0" }},
}

func dialAddr(l *Listener) string {
	a := l.Addr().String()
	return a
}

func mustListen(t *testing.T, network, address string, opts ...ListenOption) *Listener {
	t.Helper()
	l, err := Listen(network, address, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// _TestListenerClient.test_listener_client for every family, with and
// without an authkey, plus _TestListener.test_multiple_bind.
func TestListenerClient(t *testing.T) {
	for name, fam := range families {
		for _, auth := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/auth=%v", name, auth), func(t *testing.T) {
				mptest.CheckFDs(t)
				ctx := context.Background()
				var opts []ListenOption
				if auth {
					opts = append(opts, Authkey([]byte("secret")))
				}
				addr := fam.address(t)
				l := mustListen(t, fam.network, addr, opts...)
				if _, err := Listen(fam.network, dialAddr(l)); err == nil {
					t.Fatal("a second Listen on the same address succeeded")
				}
				type res struct {
					c   *Conn
					err error
				}
				acc := make(chan res, 1)
				go func() { c, err := l.Accept(ctx); acc <- res{c, err} }()
				c, err := Dial(ctx, fam.network, dialAddr(l), opts...)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				r := <-acc
				if r.err != nil {
					t.Fatal(r.err)
				}
				defer r.c.Close()
				for _, m := range []string{"", "hello", strings.Repeat("x", 100000)} {
					if err := c.SendBytes(ctx, []byte(m)); err != nil {
						t.Fatal(err)
					}
					got, err := r.c.RecvBytes(ctx)
					if err != nil || string(got) != m {
						t.Fatalf("%d bytes: %v", len(got), err)
					}
					r.c.SendBytes(ctx, got)
					if got, _ := c.RecvBytes(ctx); string(got) != m {
						t.Fatal("echo back differs")
					}
				}
				l.Close()
				if strings.HasPrefix(addr, "/") {
					if _, err := os.Stat(addr); !os.IsNotExist(err) {
						t.Errorf("socket file still there after Close: %v", err)
					}
				}
				if _, err := l.Accept(ctx); !errors.Is(err, ErrClosed) {
					t.Errorf("Accept after Close: %v", err)
				}
			})
		}
	}
}

// issue14725: a client that connects, writes and closes before Accept
// still delivers its data; Poll sees data sent right after accept.
func TestClientClosesBeforeAccept(t *testing.T) {
	for name, fam := range families {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			l := mustListen(t, fam.network, fam.address(t))
			c, err := Dial(ctx, fam.network, dialAddr(l))
			if err != nil {
				t.Fatal(err)
			}
			c.SendBytes(ctx, []byte("before accept"))
			c.Close()
			s, err := l.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if ok, err := s.Poll(ctx); !ok || err != nil {
				t.Fatalf("Poll: %v %v", ok, err)
			}
			if got, err := s.RecvBytes(ctx); err != nil || string(got) != "before accept" {
				t.Fatalf("%q %v", got, err)
			}
			if _, err := s.RecvBytes(ctx); err != io.EOF {
				t.Fatalf("then EOF, got %v", err)
			}
		})
	}
}

func TestAcceptCancel(t *testing.T) {
	l := mustListen(t, "unix", filepath.Join(t.TempDir(), "s"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Accept(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Accept with timeout: %v", err)
	}
	// The listener still works after a cancelled Accept.
	go func() {
		c, err := Dial(context.Background(), "unix", dialAddr(l))
		if err == nil {
			c.Close()
		}
	}()
	c, err := l.Accept(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Close wakes a blocked Accept.
	errc := make(chan error)
	go func() { _, err := l.Accept(context.Background()); errc <- err }()
	mptest.WaitBlocked(t, "ipc.(*Listener).Accept(")
	l.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept during Close: %v", err)
	}
}

// OtherTest.test_answer_challenge_auth_failure / deliver_challenge: a
// wrong key fails on both sides with ErrAuthentication, and the Listener
// keeps accepting.
func TestAuthFailureBothSides(t *testing.T) {
	mptest.CheckFDs(t)
	ctx := context.Background()
	l := mustListen(t, "unix", filepath.Join(t.TempDir(), "s"), Authkey([]byte("right")))
	for _, key := range []string{"wrong", ""} {
		acc := make(chan error, 1)
		go func() {
			c, err := l.Accept(ctx)
			if c != nil {
				c.Close()
			}
			acc <- err
		}()
		c, err := Dial(ctx, "unix", dialAddr(l), Authkey([]byte(key)))
		if !errors.Is(err, ErrAuthentication) || c != nil {
			t.Errorf("Dial with key %q: %v", key, err)
		}
		if err := <-acc; !errors.Is(err, ErrAuthentication) {
			t.Errorf("Accept with client key %q: %v", key, err)
		}
	}
	// A client without a key never answers: the handshake is bounded.
	l2 := mustListen(t, "unix", filepath.Join(t.TempDir(), "s2"), Authkey([]byte("k")), HandshakeTimeout(50*time.Millisecond))
	c, err := Dial(ctx, "unix", dialAddr(l2))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := l2.Accept(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Accept of a silent client: %v", err)
	}
}

// A bogus peer on either side of the handshake.
func TestHandshakeBogusPeer(t *testing.T) {
	ctx := context.Background()
	key := []byte("abc")
	cases := []struct {
		name  string
		peer  [][]byte // frames the bogus peer sends
		deliv bool     // we run DeliverChallenge (else AnswerChallenge)
	}{
		{"answer/not a challenge", [][]byte{[]byte("hello")}, false},
		{"answer/too short", [][]byte{[]byte("#CHALLENGE#0123456789")}, false},
		{"answer/bad digest", [][]byte{[]byte("#CHALLENGE#{sha1}0123456789012345678901234567890123456789")}, false},
		{"answer/rejected", [][]byte{[]byte("#CHALLENGE#01234567890123456789"), []byte("#FAILURE#")}, false},
		{"answer/too long", [][]byte{make([]byte, 300)}, false},
		{"deliver/garbage", [][]byte{[]byte("garbage")}, true},
		{"deliver/20 bytes", [][]byte{make([]byte, 20)}, true},
		{"deliver/16 bytes", [][]byte{make([]byte, 16)}, true},
		{"deliver/wrong sha256", [][]byte{append([]byte("{sha256}"), make([]byte, 32)...)}, true},
		{"deliver/short sha256", [][]byte{append([]byte("{sha256}"), make([]byte, 31)...)}, true},
		{"deliver/too long", [][]byte{make([]byte, 257)}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := mustPipe(t, true)
			go func() {
				for _, f := range tc.peer {
					b.SendBytes(ctx, f)
				}
				for {
					if _, err := b.RecvBytes(ctx); err != nil {
						return
					}
				}
			}()
			var err error
			if tc.deliv {
				err = DeliverChallenge(ctx, a, key, false)
			} else {
				err = AnswerChallenge(ctx, a, key)
			}
			a.Close()
			if !errors.Is(err, ErrAuthentication) {
				t.Fatalf("got %v, want ErrAuthentication", err)
			}
		})
	}
}

// Both generations of answers, in Go, against our verifier; strict mode
// refuses the legacy one.
func TestHandshakeGenerations(t *testing.T) {
	key := []byte("secret")
	msg := append([]byte("{sha256}"), make([]byte, 40)...)
	legacy := mac("md5", key, msg)
	if err := verify(key, msg, legacy, false); err != nil {
		t.Errorf("legacy answer refused: %v", err)
	}
	if err := verify(key, msg, legacy, true); !errors.Is(err, ErrAuthentication) {
		t.Errorf("strict accepted a legacy answer")
	}
	for _, d := range []string{"md5", "sha256", "sha384", "sha3_256", "sha3_384"} {
		resp := append([]byte("{"+d+"}"), mac(d, key, msg)...)
		if err := verify(key, msg, resp, true); err != nil {
			t.Errorf("%s answer refused: %v", d, err)
		}
		resp[len(resp)-1] ^= 1
		if err := verify(key, msg, resp, false); !errors.Is(err, ErrAuthentication) {
			t.Errorf("%s: corrupted answer accepted", d)
		}
		// response() answers a {d}-prefixed challenge with the same digest.
		ch := append([]byte("{"+d+"}"), make([]byte, 40)...)
		r, err := response(key, ch)
		if err != nil || !strings.HasPrefix(string(r), "{"+d+"}") {
			t.Errorf("response to %s challenge: %q %v", d, r, err)
		}
	}
	// A legacy 20-byte challenge gets a raw 16-byte HMAC-MD5.
	ch := make([]byte, 20)
	r, err := response(key, ch)
	if err != nil || len(r) != 16 || string(r) != string(mac("md5", key, ch)) {
		t.Errorf("legacy response: %x %v", r, err)
	}
}

// SameUser accepts a peer of our own uid.
func TestSameUser(t *testing.T) {
	ctx := context.Background()
	l := mustListen(t, "unix", filepath.Join(t.TempDir(), "s"), SameUser())
	go func() {
		if c, err := Dial(ctx, "unix", dialAddr(l)); err == nil {
			c.SendBytes(ctx, []byte("me"))
			c.Close()
		}
	}()
	c, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, _ := c.RecvBytes(ctx); string(got) != "me" {
		t.Fatalf("%q", got)
	}
}

func TestListenErrors(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{
		{"udp", "127.0.0.1:0"}, {"pipe", `\\.\pipe\x`},
	} {
		if l, err := Listen(tc.network, tc.addr); err == nil {
			l.Close()
			t.Errorf("Listen(%q, %q) succeeded", tc.network, tc.addr)
		}
	}
	if _, err := Dial(context.Background(), "unix", filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("Dial to a missing socket succeeded")
	}
}

// Concurrent Accepts: cancelling one leaves the others waiting.
func TestConcurrentAcceptCancel(t *testing.T) {
	l := mustListen(t, "unix", filepath.Join(t.TempDir(), "s"))
	ctx1, cancel1 := context.WithCancel(context.Background())
	res := make(chan error, 2)
	go func() { _, err := l.Accept(ctx1); res <- err }()
	got := make(chan *Conn, 1)
	go func() {
		c, err := l.Accept(context.Background())
		if err != nil {
			res <- err
			return
		}
		got <- c
	}()
	cancel1()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Accept: %v", err)
	}
	c, err := Dial(context.Background(), "unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case s := <-got:
		s.Close()
	case err := <-res:
		t.Fatalf("the other Accept failed: %v", err)
	}
}

// An empty address picks one (CPython's arbitrary_address); Close removes
// the directory made for a unix socket.
func TestListenAnyAddress(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		l, err := Listen(network, "")
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		go func() {
			if c, err := Dial(ctx, network, l.Addr().String()); err == nil {
				c.SendBytes(ctx, []byte("any"))
				c.Close()
			}
		}()
		c, err := l.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := c.RecvBytes(ctx); string(got) != "any" {
			t.Errorf("%s: %q", network, got)
		}
		c.Close()
		l.Close()
		if network == "unix" {
			if _, err := os.Stat(filepath.Dir(l.Addr().String())); !os.IsNotExist(err) {
				t.Errorf("temporary directory left behind: %v", err)
			}
		}
	}
}
