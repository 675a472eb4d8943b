// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Accepting without letting anyone lock the Listener out.
//
// One goroutine accepts raw connections and starts each one's handshake
// (TLS, authkey) in a goroutine of its own; a connection that passes waits
// there until an Accept call takes it. So a peer that connects and stays
// silent holds one handshake goroutine until its timeout, never Accept:
// an honest client's connect costs its own handshake round trips, however
// many silent ones are pending. The connections in the handshake (and
// those that passed it and wait for Accept) are bounded, overall and per
// peer; a new connection over a bound sheds the oldest pending one (of
// that peer when the peer is at its bound), preferring one still in the
// handshake over one waiting for Accept. Shedding the oldest keeps the
// cost of a flood on the flooder: its own connections are the oldest when
// an honest client arrives, and an honest handshake ends within a few
// round trips of its arrival.

// Default bounds on the connections in the handshake (MaxHandshakes).
const (
	DefaultMaxHandshakes        = 256
	DefaultMaxHandshakesPerPeer = 64
)

// maxAcceptErrors is how many refused connections (failed, timed out or
// shed handshakes) wait for Accept to report them; older ones are dropped.
const maxAcceptErrors = 16

// ErrHandshakeShed is the error of a connection that was dropped in the
// handshake because newer connections arrived while MaxHandshakes were
// pending (overall, or from its peer).
var ErrHandshakeShed = errors.New("ipc: too many connections in the handshake, the oldest was shed")

// MaxHandshakes bounds the connections a Listener holds before Accept
// returns them (in the TLS or authkey handshake, or waiting for Accept):
// at most total (DefaultMaxHandshakes) in all and perPeer
// (DefaultMaxHandshakesPerPeer) from one peer. A peer is an IP address on
// TCP and a process (the pid that SO_PEERCRED reports) on a unix socket.
// A connection beyond a bound sheds the oldest pending one, of the same
// peer if that peer is at its bound. Values <= 0 keep the default.
func MaxHandshakes(total, perPeer int) ListenOption {
	return func(o *listenOptions) {
		if total > 0 {
			o.maxHS = total
		}
		if perPeer > 0 {
			o.maxHSPeer = perPeer
		}
	}
}

// HandshakeError is the error of a connection that Accept refused (or,
// for a TLS handshake, that Dial could not make): its handshake failed,
// timed out or was shed. It names the peer and wraps the cause
// (ErrAuthentication for a wrong key, context.DeadlineExceeded for a
// timeout, ErrHandshakeShed, a crypto/tls error, an I/O error).
type HandshakeError struct {
	// Peer is the peer's address ("127.0.0.1:5555") on TCP, its process
	// on a unix socket ("pid 123 uid 1000").
	Peer string
	TLS  bool // the TLS handshake failed (TLS)
	Err  error
}

func (e *HandshakeError) Error() string {
	what := "handshake"
	if e.TLS {
		what = "tls handshake"
	}
	return fmt.Sprintf("ipc: %s with %s: %s", what, e.Peer, strings.TrimPrefix(e.Err.Error(), "ipc: "))
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// handshakes is a Listener's accepting machinery; the Listener's mu
// guards its slices and maps.
type handshakes struct {
	started bool
	stop    chan struct{} // closed by Close
	ready   chan *Conn    // authenticated connections, to Accept
	errNote chan struct{} // (cap 1) errs has grown
	wg      sync.WaitGroup

	pending []*pendingConn // oldest first
	perPeer map[string]int
	errs    []error
}

// pendingConn is one connection between the raw accept and Accept.
type pendingConn struct {
	peer, key string
	nc        net.Conn
	ctx       context.Context
	cancel    context.CancelCauseFunc
	passed    bool // its handshake is done: it waits for Accept
}

func newListener(nl net.Listener, o listenOptions, tmpDir string) *Listener {
	return &Listener{l: nl, opts: o, tmpDir: tmpDir, hs: handshakes{
		stop: make(chan struct{}), ready: make(chan *Conn), errNote: make(chan struct{}, 1),
		perPeer: map[string]int{},
	}}
}

// Accept waits for a connection that has passed its handshakes (with
// TLS and Authkey: the TLS one, then the authkey challenge to the
// client first, then the client's, in CPython's order) and returns it.
// Handshakes run concurrently in the background from the first Accept on
// until Close, bounded by HandshakeTimeout each and MaxHandshakes in all,
// so no peer can delay another's. A connection whose handshake failed is
// closed and Accept returns its *HandshakeError (wrapping
// ErrAuthentication for a wrong key), as CPython's accept() raises; the
// Listener stays usable. Of refused connections not yet reported, only the
// 16 most recent are kept. Accept returns ctx.Err() when ctx ends and
// ErrClosed once the Listener is closed.
func (l *Listener) Accept(ctx context.Context) (*Conn, error) {
	hs := &l.hs
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	if !hs.started {
		hs.started = true
		hs.wg.Add(1)
		go l.acceptLoop()
	}
	l.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for {
		// A connection that passed goes before reports of refused ones.
		select {
		case c := <-hs.ready:
			return c, nil
		default:
		}
		if err := l.popError(); err != nil {
			return nil, err
		}
		select {
		case c := <-hs.ready:
			return c, nil
		case <-hs.errNote:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-hs.stop:
			return nil, ErrClosed
		}
	}
}

// closeHandshakes ends the accepting machinery (called by Close once,
// after the net.Listener is closed): pending handshakes are cancelled and
// every goroutine has ended when it returns.
func (l *Listener) closeHandshakes() {
	hs := &l.hs
	l.mu.Lock()
	pending := hs.pending
	hs.pending, hs.errs = nil, nil
	clear(hs.perPeer)
	l.mu.Unlock()
	close(hs.stop)
	for _, p := range pending {
		p.cancel(ErrClosed)
	}
	hs.wg.Wait()
}

// acceptLoop accepts raw connections and starts their handshakes until
// the Listener is closed.
func (l *Listener) acceptLoop() {
	hs := &l.hs
	defer hs.wg.Done()
	var backoff time.Duration
	for {
		nc, err := l.l.Accept()
		if err != nil {
			select {
			case <-hs.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: report it and retry after
			// a growing pause, as net/http does.
			l.report(fmt.Errorf("ipc: accept: %w", err))
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-hs.stop:
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		l.startHandshake(nc)
	}
}

// startHandshake registers nc as pending, shedding the oldest pending
// connection if a bound is reached, and starts its handshake.
func (l *Listener) startHandshake(nc net.Conn) {
	hs := &l.hs
	peer, key, err := peerOf(nc, l.opts.peerCreds)
	if err != nil {
		nc.Close()
		l.report(&HandshakeError{Peer: peer, Err: err})
		return
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	p := &pendingConn{peer: peer, key: key, nc: nc, ctx: ctx, cancel: cancel}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		cancel(ErrClosed)
		nc.Close()
		return
	}
	var victim *pendingConn
	switch {
	case hs.perPeer[key] >= l.opts.maxHSPeer:
		victim = l.shedLocked(key)
	case len(hs.pending) >= l.opts.maxHS:
		victim = l.shedLocked("")
	}
	hs.pending = append(hs.pending, p)
	hs.perPeer[key]++
	hs.wg.Add(1)
	l.mu.Unlock()
	if victim != nil {
		victim.cancel(fmt.Errorf("%w (at most %d in all, %d per peer)", ErrHandshakeShed, l.opts.maxHS, l.opts.maxHSPeer))
	}
	go l.handshake(p)
}

// shedLocked removes and returns the oldest pending connection of peer
// key (of any peer if key is ""), preferring one still in the handshake.
func (l *Listener) shedLocked(key string) *pendingConn {
	hs := &l.hs
	at := -1
	for i, p := range hs.pending {
		if key != "" && p.key != key {
			continue
		}
		if !p.passed {
			at = i
			break
		}
		if at < 0 {
			at = i
		}
	}
	if at < 0 {
		return nil
	}
	p := hs.pending[at]
	l.removeLocked(at)
	return p
}

func (l *Listener) removeLocked(i int) {
	hs := &l.hs
	p := hs.pending[i]
	hs.pending = slices.Delete(hs.pending, i, i+1)
	if hs.perPeer[p.key]--; hs.perPeer[p.key] <= 0 {
		delete(hs.perPeer, p.key)
	}
}

// done forgets p (if it was not shed already).
func (l *Listener) done(p *pendingConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, q := range l.hs.pending {
		if q == p {
			l.removeLocked(i)
			return
		}
	}
}

// handshake runs p's handshakes and hands the Conn to an Accept call.
func (l *Listener) handshake(p *pendingConn) {
	hs := &l.hs
	defer hs.wg.Done()
	defer p.cancel(nil)
	c, err := connect(p.ctx, p.nc, l.opts, true, p.peer)
	if err == nil {
		l.mu.Lock()
		p.passed = true
		l.mu.Unlock()
		select {
		case hs.ready <- c:
			l.done(p)
			return
		case <-p.ctx.Done():
			c.Close()
			err = p.ctx.Err()
		}
	}
	l.done(p)
	if p.ctx.Err() != nil {
		// Shed, or the Listener closed: the cause says which.
		cause := context.Cause(p.ctx)
		if errors.Is(cause, ErrClosed) {
			return
		}
		err = &HandshakeError{Peer: p.peer, Err: cause}
	}
	l.report(err)
}

// report queues a refused connection's error for Accept.
func (l *Listener) report(err error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	if len(l.hs.errs) == maxAcceptErrors {
		l.hs.errs = append(l.hs.errs[:0], l.hs.errs[1:]...)
	}
	l.hs.errs = append(l.hs.errs, err)
	l.mu.Unlock()
	l.noteError()
}

func (l *Listener) noteError() {
	select {
	case l.hs.errNote <- struct{}{}:
	default:
	}
}

// popError returns the oldest error not yet reported, or nil.
func (l *Listener) popError() error {
	l.mu.Lock()
	if len(l.hs.errs) == 0 {
		l.mu.Unlock()
		return nil
	}
	err := l.hs.errs[0]
	l.hs.errs = append(l.hs.errs[:0], l.hs.errs[1:]...)
	more := len(l.hs.errs) > 0
	l.mu.Unlock()
	if more {
		l.noteError() // wake another waiting Accept
	}
	return err
}

// peerOf names nc's peer for errors and returns the key its handshakes
// are counted under: the IP address on TCP, the process on a unix socket
// (SO_PEERCRED; all peers whose credentials cannot be read count as one).
// With sameUser, a unix peer of another user is refused.
func peerOf(nc net.Conn, sameUser bool) (peer, key string, err error) {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		peer = nc.RemoteAddr().String()
		key = peer
		if host, _, err := net.SplitHostPort(peer); err == nil {
			key = host
		}
		return peer, key, nil
	}
	peer, key = "unix peer", "unix"
	cred, err := peerCred(uc)
	if err != nil {
		if sameUser {
			return peer, key, err
		}
		return peer, key, nil
	}
	peer = "pid " + strconv.Itoa(int(cred.Pid)) + " uid " + strconv.Itoa(int(cred.Uid))
	key = "pid " + strconv.Itoa(int(cred.Pid))
	if sameUser && int(cred.Uid) != unix.Getuid() {
		return peer, key, fmt.Errorf("%w: peer runs as uid %d", ErrAuthentication, cred.Uid)
	}
	return peer, key, nil
}

func peerCred(uc *net.UnixConn) (*unix.Ucred, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("ipc: SO_PEERCRED: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("ipc: SO_PEERCRED: %w", err)
	}
	if cerr != nil {
		return nil, fmt.Errorf("ipc: SO_PEERCRED: %w", cerr)
	}
	return cred, nil
}
