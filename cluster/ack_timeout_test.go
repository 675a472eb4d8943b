// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
)

// pauseProxy forwards TCP connections to a server. While paused, it
// forwards nothing the server sends (the clients see a server that
// stopped answering, as one stopped with SIGSTOP, or killed in the
// middle of an acknowledgement), while what they send still reaches it.
type pauseProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newPauseProxy(t *testing.T, target string) *pauseProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &pauseProxy{ln: ln, target: target}
	px.cond = sync.NewCond(&px.mu)
	px.wg.Add(1)
	go px.accept()
	t.Cleanup(px.close)
	return px
}

func (px *pauseProxy) url() string { return "nats://" + px.ln.Addr().String() }

func (px *pauseProxy) accept() {
	defer px.wg.Done()
	for {
		c, err := px.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", px.target)
		if err != nil {
			c.Close()
			continue
		}
		px.mu.Lock()
		px.conns = append(px.conns, c, s)
		px.mu.Unlock()
		px.wg.Add(2)
		go func() {
			defer px.wg.Done()
			// Not io.Copy: between two TCP connections it splices
			// through pipes that the runtime keeps (the leak check
			// would see them).
			io.Copy(struct{ io.Writer }{s}, struct{ io.Reader }{c})
			s.Close()
			c.Close()
		}()
		go func() {
			defer px.wg.Done()
			defer c.Close()
			defer s.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				px.mu.Lock()
				for px.paused {
					px.cond.Wait()
				}
				px.mu.Unlock()
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func (px *pauseProxy) pause(on bool) {
	px.mu.Lock()
	px.paused = on
	px.cond.Broadcast()
	px.mu.Unlock()
}

func (px *pauseProxy) close() {
	px.ln.Close()
	px.mu.Lock()
	px.paused = false
	px.cond.Broadcast()
	for _, c := range px.conns {
		c.Close()
	}
	px.mu.Unlock()
	px.wg.Wait()
}

// A chunk whose publish is never acknowledged (its server stopped
// answering: killed while the publish was in flight, or stopped) is
// published again after publishAckTimeout, under the same chunk id, and
// not only after RepublishAfter; its result is accepted once.
func TestUnacknowledgedPublishIsRepublished(t *testing.T) {
	// The leak checks run after the server is closed.
	mptest.CheckChildren(t)
	mptest.CheckFDs(t)
	urls := startServers(t, 1)
	px := newPauseProxy(t, strings.TrimPrefix(urls[0], "nats://"))
	ctx := context.Background()
	nctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	// Its local agent connects through the proxy too: while paused, it
	// receives nothing either.
	p, err := New(nctx, URL(px.url()), Agents(1), AckWait(time.Second), RepublishAfter(30*time.Second))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	waitWorkers(t, p, 1)

	px.pause(true)
	f := square.Submit(ctx, p, 7)
	// A generous ceiling, below RepublishAfter: the republish follows
	// the acknowledgement's timeout (3s), not the 30s check.
	deadline := time.Now().Add(20 * time.Second)
	for p.Stats().Republished == 0 {
		if time.Now().After(deadline) {
			px.pause(false)
			t.Fatalf("no republish of an unacknowledged publish within 20s: %+v", p.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	px.pause(false)
	gctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if v, err := f.Get(gctx); err != nil || v != 49 {
		t.Fatalf("Submit = %d, %v", v, err)
	}
	if v, err := square.Apply(gctx, p, 8); err != nil || v != 64 {
		t.Fatalf("Apply after the pause = %d, %v", v, err)
	}
}
