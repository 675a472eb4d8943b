// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/process"
)

// gateInit is a test hook, used as a pool's Initializer: a starting
// worker connects to the unix socket sock, says its pid, and waits for one
// byte before it reports ready. The test (a gatekeeper) decides whether to
// let it through or to SIGKILL it first, so that replacements can be
// killed before they are ready, deterministically.
var gateInit = pool.Register("test.gate", func(ctx context.Context, sock string) (struct{}, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return struct{}{}, err
	}
	defer c.Close()
	if _, err := c.Write([]byte(strconv.Itoa(os.Getpid()) + "\n")); err != nil {
		return struct{}{}, err
	}
	var b [1]byte
	_, err = c.Read(b[:])
	return struct{}{}, err
})

// gatekeeper serves gateInit's socket: each starting worker is an arrival.
type gatekeeper struct {
	t    *testing.T
	sock string
	in   chan arrival
}

type arrival struct {
	pid  int
	conn net.Conn
}

func newGatekeeper(t *testing.T) *gatekeeper {
	g := &gatekeeper{t: t, sock: filepath.Join(t.TempDir(), "gate"), in: make(chan arrival, 64)}
	l, err := net.Listen("unix", g.sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			pid, perr := strconv.Atoi(line[:max(len(line)-1, 0)])
			if err != nil || perr != nil {
				c.Close()
				continue
			}
			g.in <- arrival{pid, c}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for {
			select {
			case a := <-g.in:
				a.conn.Close()
			default:
				return
			}
		}
	})
	return g
}

// next waits for the next starting worker (a generous ceiling: failing
// beats hanging).
func (g *gatekeeper) next() arrival {
	g.t.Helper()
	select {
	case a := <-g.in:
		return a
	case <-time.After(60 * time.Second):
		g.t.Fatal("no worker came to the gate in 60 s")
		return arrival{}
	}
}

// pass lets the next starting worker report ready.
func (g *gatekeeper) pass() int {
	g.t.Helper()
	a := g.next()
	a.conn.Write([]byte{1})
	a.conn.Close()
	return a.pid
}

// snipe SIGKILLs the next starting worker before it is ready.
func (g *gatekeeper) snipe() int {
	g.t.Helper()
	a := g.next()
	if err := syscall.Kill(a.pid, syscall.SIGKILL); err != nil {
		g.t.Fatal(err)
	}
	a.conn.Close()
	return a.pid
}

// waitPids waits until the pool has want live workers, none of them in
// old, and returns them.
func waitPids(t *testing.T, p *pool.Pool, want int, old []int) []int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		pids := p.Pids()
		if len(pids) == want && !slices.ContainsFunc(pids, func(x int) bool { return slices.Contains(old, x) }) {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool has workers %v, want %d new ones (old: %v)", pids, want, old)
		}
		time.Sleep(time.Millisecond)
	}
}

// Replacements killed before they are ready are started again, with no
// submission to prompt it, until the pool is back to full strength; a Map
// submitted while no worker is alive completes with no error.
func TestReplacementKilledBeforeReady(t *testing.T) {
	mptest.CheckChildren(t)
	g := newGatekeeper(t)
	pc := make(chan *pool.Pool, 1)
	go func() {
		p, err := pool.New(bg, pool.Workers(2), pool.Initializer(gateInit, g.sock))
		if err != nil {
			t.Error(err)
		}
		pc <- p
	}()
	g.pass()
	g.pass()
	p := <-pc
	if p == nil {
		t.FailNow()
	}
	defer p.Terminate()

	// One worker dies; its replacement is killed twice before it is
	// ready. The pool starts a third on its own.
	first := p.Pids()
	syscall.Kill(first[0], syscall.SIGKILL)
	g.snipe()
	g.snipe()
	g.pass()
	waitPids(t, p, 2, first[:1])

	// Both workers die while idle, and their replacements are killed
	// before they are ready, while a Map waits for workers.
	second := p.Pids()
	for _, pid := range second {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	g.snipe()
	g.snipe()
	type res struct {
		got []int
		err error
	}
	mc := make(chan res, 1)
	go func() {
		got, err := square.Map(bg, p, ints(4000))
		mc <- res{got, err}
	}()
	g.snipe()
	g.snipe()
	g.pass()
	g.pass()
	r := <-mc
	var se *pool.StartError
	if errors.As(r.err, &se) || r.err != nil {
		t.Fatalf("Map = %v", r.err)
	}
	if !slices.Equal(r.got, squares(4000)) {
		t.Errorf("Map: wrong results")
	}
	waitPids(t, p, 2, second)
}

// A Starter that fails every start after the first workers: while one
// worker lives, tasks never fail for it; once none is left, the waiting
// calls fail with one clear error that wraps the Starter's, after a
// bounded number of attempts, and the pool does not hang.
func TestReplacementStarterFails(t *testing.T) {
	mptest.CheckChildren(t)
	st := &failingStarter{failFrom: 3}
	p := newPool(t, pool.Workers(2), pool.Starter(st))
	pids := p.Pids()
	syscall.Kill(pids[0], syscall.SIGKILL)
	waitPids(t, p, 1, pids[:1])
	got, err := square.Map(bg, p, ints(2000), pool.Chunksize(10))
	if err != nil || !slices.Equal(got, squares(2000)) {
		t.Fatalf("Map with one worker left = %v", err)
	}
	syscall.Kill(pids[1], syscall.SIGKILL)
	waitPids(t, p, 0, nil)
	ctx, cancel := context.WithTimeout(bg, 60*time.Second)
	defer cancel()
	_, err = square.Map(ctx, p, ints(2000), pool.Chunksize(10))
	var se *pool.StartError
	if !errors.As(err, &se) || !errors.Is(err, errStarter) || se.Attempts < 2 {
		t.Fatalf("Map with no worker startable = %v, want a *StartError wrapping the Starter's error after several attempts", err)
	}
	t.Logf("error: %v", err)
	if n := st.n.Load(); n < 2+int32(se.Attempts) {
		t.Errorf("%d starts, want at least %d", n, 2+se.Attempts)
	}
}

// A worker killed before it is ready is reported as a death
// (ErrWorkerDied) inside the *StartError, as any worker death is.
func TestStartErrorIsWorkerDied(t *testing.T) {
	mptest.CheckChildren(t)
	g := newGatekeeper(t)
	errc := make(chan error, 1)
	go func() {
		p, err := pool.New(bg, pool.Workers(1), pool.Initializer(gateInit, g.sock))
		if p != nil {
			p.Terminate()
		}
		errc <- err
	}()
	pid := g.snipe()
	err := <-errc
	var se *pool.StartError
	var de *pool.WorkerDiedError
	if !errors.As(err, &se) || !errors.As(err, &de) || !errors.Is(err, pool.ErrWorkerDied) ||
		de.Pid != pid || de.Signal != syscall.SIGKILL || !de.BeforeReady || !errors.As(err, new(*process.ExitError)) {
		t.Fatalf("New = %v, want a *StartError wrapping the death of %d", err, pid)
	}
}
