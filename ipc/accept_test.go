// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
)

// acceptAll calls Accept until the Listener closes, sending what it gets
// to conns and errs (errs drops what does not fit). stop waits for it.
func acceptAll(l *Listener) (conns chan *Conn, errs chan error, stop func()) {
	conns, errs = make(chan *Conn, 16), make(chan error, 1024)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept(context.Background())
			if errors.Is(err, ErrClosed) {
				return
			}
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				continue
			}
			conns <- c
		}
	})
	return conns, errs, func() {
		l.Close()
		wg.Wait()
		for len(conns) > 0 {
			(<-conns).Close()
		}
	}
}

// flood opens n connections to addr that stay silent and n that send
// one byte (the start of a frame header) and stop. The caller closes them.
func flood(t *testing.T, network, addr string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for i := range 2 * n {
		c, err := net.Dial(network, addr)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			t.Fatalf("connection %d of the flood: %v", i, err)
		}
		if i%2 == 1 {
			c.Write([]byte{0})
		}
		conns = append(conns, c)
	}
	return conns
}

// Issue 14 item 1: 200 silent connections and 200 that send one byte and
// stop do not keep an honest client out, with the handshake timeout left
// at its default: it connects (within a context shorter than that
// timeout, so it cannot have waited for a silent peer's handshake to time
// out) and exchanges messages while they are all open. The Listener sheds
// the oldest of them and says so, naming the peer.
func TestAcceptFlood(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			mptest.CheckFDs(t)
			key := Authkey([]byte("secret"))
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = families["unix"].address(t)
			}
			l := mustListen(t, network, addr, key)
			conns, errs, stop := acceptAll(l)
			defer stop()
			attackers := flood(t, network, l.Addr().String(), 200)
			defer func() {
				for _, c := range attackers {
					c.Close()
				}
			}()

			ctx, cancel := context.WithTimeout(context.Background(), DefaultHandshakeTimeout/2)
			defer cancel()
			c, err := Dial(ctx, network, l.Addr().String(), key)
			if err != nil {
				t.Fatalf("honest Dial during the flood: %v", err)
			}
			defer c.Close()
			var s *Conn
			select {
			case s = <-conns:
			case <-ctx.Done():
				t.Fatal("Accept did not return the honest client")
			}
			defer s.Close()
			for i := range 3 {
				msg := fmt.Sprintf("message %d", i)
				if err := c.SendBytes(ctx, []byte(msg)); err != nil {
					t.Fatal(err)
				}
				got, err := s.RecvBytes(ctx)
				if err != nil || string(got) != msg {
					t.Fatalf("server got %q, %v; want %q", got, err, msg)
				}
				if err := s.SendBytes(ctx, got); err != nil {
					t.Fatal(err)
				}
				if got, err := c.RecvBytes(ctx); err != nil || string(got) != msg {
					t.Fatalf("client got %q, %v; want %q", got, err, msg)
				}
			}

			// The flood was over the per-peer bound: Accept reported shed
			// handshakes, each naming the peer.
			select {
			case err := <-errs:
				var he *HandshakeError
				if !errors.As(err, &he) || !errors.Is(err, ErrHandshakeShed) {
					t.Fatalf("Accept error %v, want a *HandshakeError wrapping ErrHandshakeShed", err)
				}
				want := "ipc: handshake with 127.0.0.1:"
				if network == "unix" {
					want = "ipc: handshake with pid "
				}
				if !strings.HasPrefix(err.Error(), want) {
					t.Errorf("Accept error %q, want it to start with %q", err, want)
				}
			case <-ctx.Done():
				t.Fatal("Accept reported no shed handshake")
			}
			l.mu.Lock()
			pending := len(l.hs.pending)
			l.mu.Unlock()
			if pending > DefaultMaxHandshakesPerPeer {
				t.Errorf("%d connections pending from one peer, want at most %d", pending, DefaultMaxHandshakesPerPeer)
			}
		})
	}
}

// The bounds shed the oldest connection: of the same peer when that peer
// is at its bound, of any peer when all are. Peers are loopback addresses
// of their own (127.0.0.2, ...). The survivors still pass the handshake;
// the shed ones are closed.
func TestAcceptShedsOldest(t *testing.T) {
	mptest.CheckFDs(t)
	key := []byte("secret")
	l := mustListen(t, "tcp", "127.0.0.1:0", Authkey(key), MaxHandshakes(8, 4))
	accepted, errs, stop := acceptAll(l)
	defer stop()
	dialFrom := func(ip string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var a, b, c []net.Conn
	for range 10 {
		a = append(a, dialFrom("127.0.0.2"))
	}
	for range 3 {
		b = append(b, dialFrom("127.0.0.3"))
	}
	for range 2 {
		c = append(c, dialFrom("127.0.0.4"))
	}
	// a[0:6] were shed for a's bound (4), then a[6] for the total (8)
	// when c[1] came.
	shed, kept := a[:7], append(append(a[7:], b...), c...)
	ctx := ctxTimeout(t)
	// Accept reports each shed connection (and that all 15 are in).
	for range shed {
		select {
		case err := <-errs:
			var he *HandshakeError
			if !errors.Is(err, ErrHandshakeShed) || !errors.As(err, &he) || !strings.HasPrefix(he.Peer, "127.0.0.2:") {
				t.Errorf("Accept error %v, want ErrHandshakeShed from 127.0.0.2", err)
			}
		case <-ctx.Done():
			t.Fatal("Accept did not report every shed connection")
		}
	}
	var wg sync.WaitGroup
	for i, nc := range shed {
		wg.Go(func() {
			cc, err := connect(ctx, nc, makeListenOptions([]ListenOption{Authkey(key)}), false, "")
			if err == nil {
				cc.Close()
				t.Errorf("shed connection a[%d] passed the handshake", i)
			}
		})
	}
	var mu sync.Mutex
	var got []*Conn
	for i, nc := range kept {
		wg.Go(func() {
			cc, err := connect(ctx, nc, makeListenOptions([]ListenOption{Authkey(key)}), false, "")
			if err != nil {
				t.Errorf("kept connection %d (%s): %v", i, nc.LocalAddr(), err)
				return
			}
			mu.Lock()
			got = append(got, cc)
			mu.Unlock()
		})
	}
	wg.Wait()
	defer func() {
		for _, cc := range got {
			cc.Close()
		}
	}()
	for range len(got) {
		select {
		case s := <-accepted:
			s.Close()
		case <-ctx.Done():
			t.Fatal("Accept did not return every kept connection")
		}
	}
}

// Close ends pending handshakes and the Listener's goroutines (TestMain
// checks for leaked goroutines, CheckFDs for descriptors).
func TestAcceptCloseWithPending(t *testing.T) {
	mptest.CheckFDs(t)
	l := mustListen(t, "tcp", "127.0.0.1:0", Authkey([]byte("k")))
	_, _, stop := acceptAll(l)
	attackers := flood(t, "tcp", l.Addr().String(), 20)
	defer func() {
		for _, c := range attackers {
			c.Close()
		}
	}()
	// Wait until the Listener holds them all.
	for _, c := range attackers {
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	// Every attacker is disconnected: it reads the rest of the challenge
	// and then the end of the stream.
	for i, c := range attackers {
		buf := make([]byte, 256)
		for {
			_, err := c.Read(buf)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("attacker %d: %v", i, err)
				}
				break
			}
		}
	}
}

// A peer that drops the handshake is reported by Accept with the package
// prefix and the peer's address, as an authentication failure that says
// what the peer did, never as a bare "broken pipe" or "EOF".
func TestAcceptErrorNamesPeer(t *testing.T) {
	mptest.CheckFDs(t)
	l := mustListen(t, "tcp", "127.0.0.1:0", Authkey([]byte("k")))
	_, errs, stop := acceptAll(l)
	defer stop()
	drops := []func(c net.Conn){
		func(c net.Conn) {},                                                  // hangs up at once
		func(c net.Conn) { c.Read(make([]byte, 64)) },                        // reads the challenge, hangs up
		func(c net.Conn) { c.Read(make([]byte, 64)); c.Write([]byte{0, 0}) }, // half a header
		func(c net.Conn) {
			c.Read(make([]byte, 64))
			c.(*net.TCPConn).SetLinger(0) // hangs up with a reset
		},
	}
	ctx := ctxTimeout(t)
	for i, drop := range drops {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		drop(c)
		c.Close()
		select {
		case err := <-errs:
			var he *HandshakeError
			want := "ipc: handshake with " + c.LocalAddr().String() + ": "
			if !errors.As(err, &he) || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, ErrAuthentication) {
				t.Errorf("drop %d: Accept error %q, want a *HandshakeError starting %q wrapping ErrAuthentication", i, err, want)
			}
			t.Logf("drop %d: %v", i, err)
		case <-ctx.Done():
			t.Fatalf("drop %d: Accept reported nothing", i)
		}
	}
}
