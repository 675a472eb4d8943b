// SPDX-License-Identifier: Apache-2.0

package futex

import (
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Exit watches. A waiter that has slept a while on a lock held by another
// process asks to be woken when that process exits, instead of polling
// /proc. The kernel makes a pidfd (pidfd_open(2)) readable when its
// process exits (becomes a zombie or goes away); the Go runtime's poller
// (epoll) waits for that, so a watch costs a parked goroutine and one
// descriptor: no thread, no timer, no wake-up until the exit. When it
// fires, the watch bumps the futex words registered with it (increment,
// FUTEX_WAKE all), so the sleepers return from FUTEX_WAIT and re-check the
// holder. One pidfd serves every waiter of this process on the same
// process.

// A Watch is one waiter's registration with an exit watch.
type Watch struct {
	e    *exitWatch
	word *uint32
}

type exitWatch struct {
	id     ID
	f      *os.File
	words  map[*uint32]int // registered words and how many waiters each
	fired  atomic.Bool     // the process exited
	broken atomic.Bool     // the poller could not wait: callers poll instead
	done   bool            // no longer in watches.m; f closed or closing (watches.mu)
}

var watches struct {
	sync.Mutex
	m map[ID]*exitWatch
}

// WatchExit registers word to be bumped when process id exits. It returns
// dead when id is no longer alive (as Alive judges: exited, a zombie, or
// its pid now names another process), and a nil Watch without dead when
// the system cannot watch (no pidfd_open, /proc hidden, an ID without a
// start time): the caller falls back to polling Alive. Stop ends the
// registration; the caller must call it, and word must stay mapped until
// it returns.
func WatchExit(id ID, word *uint32) (w *Watch, dead bool) {
	if id == 0 {
		return nil, true
	}
	if id == Self() {
		return nil, false
	}
	watches.Lock()
	defer watches.Unlock()
	e := watches.m[id]
	if e == nil {
		var dead bool
		e, dead = openWatch(id)
		if e == nil {
			return nil, dead
		}
		if watches.m == nil {
			watches.m = map[ID]*exitWatch{}
		}
		watches.m[id] = e
		go e.wait()
	}
	e.words[word]++
	return &Watch{e: e, word: word}, false
}

// openWatch opens a pidfd for id and checks that it names id (and not a
// process that reused its pid). The caller holds watches.mu.
func openWatch(id ID) (*exitWatch, bool) {
	pid := id.Pid()
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err == unix.EINVAL {
		// Before Linux 5.10 there is no PIDFD_NONBLOCK; the poller only
		// needs O_NONBLOCK on the file.
		if fd, err = unix.PidfdOpen(pid, 0); err == nil {
			err = unix.SetNonblock(fd, true)
			if err != nil {
				unix.Close(fd)
			}
		}
	}
	if err == unix.ESRCH {
		return nil, true
	}
	if err != nil {
		return nil, false
	}
	// The pidfd names whatever process has pid now: it is id only if
	// the start time matches, read after the pidfd pinned that process.
	start := uint32(uint64(id) >> 32)
	st, state, ok := procStat(pid)
	switch {
	case !ok && pidfdReady(fd):
		unix.Close(fd)
		return nil, true
	case !ok || start == 0:
		unix.Close(fd)
		return nil, false
	case uint32(st) != start || state == 'Z' || state == 'X' || state == 'x':
		unix.Close(fd)
		return nil, true
	}
	return &exitWatch{id: id, f: os.NewFile(uintptr(fd), "pidfd"), words: map[*uint32]int{}}, false
}

// pidfdReady reports whether the pidfd's process has exited.
func pidfdReady(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(p, 0)
	return err == nil && n > 0 && p[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0
}

// wait parks in the poller until the process exits or the watch is
// stopped (which closes the file and so wakes it with an error).
func (e *exitWatch) wait() {
	rc, err := e.f.SyscallConn()
	if err == nil {
		err = rc.Read(func(fd uintptr) bool { return pidfdReady(int(fd)) })
	}
	watches.Lock()
	if e.done {
		// Stopped: Stop closed the file.
		watches.Unlock()
		return
	}
	if err != nil {
		e.broken.Store(true)
	} else {
		e.fired.Store(true)
		for w := range e.words {
			atomic.AddUint32(w, 1)
			WakeAll(w)
		}
	}
	e.done = true
	delete(watches.m, e.id)
	watches.Unlock()
	e.f.Close()
}

// Fired reports whether the watched process has exited.
func (w *Watch) Fired() bool { return w.e.fired.Load() }

// Broken reports whether the watch cannot tell (the poller refused the
// pidfd): the caller polls Alive instead.
func (w *Watch) Broken() bool { return w.e.broken.Load() }

// ID returns the watched process.
func (w *Watch) ID() ID { return w.e.id }

// Stop ends the registration. After it returns the watch no longer
// touches the word. Stop of a nil Watch does nothing.
func (w *Watch) Stop() {
	if w == nil {
		return
	}
	e := w.e
	watches.Lock()
	if n := e.words[w.word] - 1; n > 0 {
		e.words[w.word] = n
	} else {
		delete(e.words, w.word)
	}
	last := len(e.words) == 0 && !e.done
	if last {
		e.done = true
		delete(watches.m, e.id)
	}
	watches.Unlock()
	if last {
		// Wakes wait, which sees done and returns.
		e.f.Close()
	}
}
