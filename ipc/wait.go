// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// A Waitable is something Wait can wait on: a Conn, or (in the process
// package) a child process's sentinel. WaitFD returns a descriptor that
// becomes readable when the object is ready, and ready=true if it is ready
// already (for a Conn: data is buffered, or the peer's end of stream was
// seen), in which case fd is not polled. An error makes Wait return it.
type Waitable interface {
	WaitFD() (fd uintptr, ready bool, err error)
}

// WaitFD implements Waitable: the Conn is ready when a receive would not
// block. The descriptor is the Conn's read side; it is only valid while the
// Conn is open, so do not Close a Conn that another goroutine is waiting
// on. While another goroutine is receiving on the Conn, WaitFD reports the
// descriptor without looking at the Conn's buffer.
func (c *Conn) WaitFD() (uintptr, bool, error) {
	if err := c.checkRecv(); err != nil {
		return 0, false, err
	}
	if c.rmu.TryLock() {
		ready := c.readyLocked()
		c.rmu.Unlock()
		if ready {
			return 0, true, nil
		}
	}
	var fd uintptr
	if err := c.rraw.Control(func(f uintptr) { fd = f }); err != nil {
		return 0, false, c.mapErr(err)
	}
	return fd, false, nil
}

// Wait blocks until at least one of objs is ready and returns the ready
// ones, in the order given, like CPython's multiprocessing.connection.wait.
// Readiness is level-triggered: Wait consumes nothing, and a Conn stays
// ready until its data has been received. A descriptor that hangs up or
// fails (POLLHUP, POLLERR, POLLNVAL) counts as ready, so that the next
// operation on it reports what happened.
//
// When ctx ends first, Wait returns no objects and ctx's error; with a ctx
// that has already ended it still returns the objects that are ready at
// once (CPython's wait with a zero or negative timeout). Wait with no
// objects waits for ctx.
//
// Wait is safe to call from several goroutines at once. It waits in
// poll(2) on its own thread; cancellation wakes it through an eventfd.
func Wait(ctx context.Context, objs ...Waitable) ([]Waitable, error) {
	fds := make([]unix.PollFd, 0, len(objs)+1)
	idx := make([]int, 0, len(objs)) // objs index of each fds entry
	already := make([]bool, len(objs))
	nready := 0
	for i, o := range objs {
		fd, ok, err := o.WaitFD()
		if err != nil {
			return nil, err
		}
		if ok {
			already[i] = true
			nready++
			continue
		}
		if fd > 1<<31-1 {
			return nil, fmt.Errorf("ipc: Wait: bad descriptor %d", fd)
		}
		fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
		idx = append(idx, i)
	}
	if nready > 0 || ctx.Err() != nil {
		// Report everything ready now, without blocking.
		if len(fds) > 0 {
			if _, err := pollFDs(fds, 0); err != nil {
				return nil, err
			}
		}
		if ready := collect(objs, already, fds, idx); len(ready) > 0 {
			return ready, nil
		}
		return nil, ctx.Err()
	}
	kick := -1
	if ctx.Done() != nil {
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			return nil, os.NewSyscallError("eventfd", err)
		}
		kick = len(fds)
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			unix.Write(efd, kickBytes[:])
			close(fired)
		})
		defer func() {
			if !stop() {
				<-fired
			}
			unix.Close(efd)
		}()
		fds = append(fds, unix.PollFd{Fd: int32(efd), Events: unix.POLLIN})
	}
	for {
		timeout := -1
		dl, hasDL := ctx.Deadline()
		if hasDL {
			// Round up: waking early would only poll again.
			timeout = max(0, int((time.Until(dl)+time.Millisecond-1)/time.Millisecond))
		}
		n, err := pollFDs(fds, timeout)
		if err != nil {
			return nil, err
		}
		if kick >= 0 && fds[kick].Revents != 0 {
			n--
		}
		if n > 0 {
			return collect(objs, already, fds[:len(idx)], idx), nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if hasDL && !time.Now().Before(dl) {
			// poll(2) timed out just before the context's own timer fired.
			return nil, context.DeadlineExceeded
		}
	}
}

func pollFDs(fds []unix.PollFd, timeout int) (int, error) {
	for {
		n, err := unix.Poll(fds, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, os.NewSyscallError("poll", err)
		}
		return n, nil
	}
}

// collect returns the ready objects in input order.
func collect(objs []Waitable, already []bool, fds []unix.PollFd, idx []int) []Waitable {
	for j, i := range idx {
		if fds[j].Revents != 0 {
			already[i] = true
		}
	}
	var ready []Waitable
	for i, ok := range already {
		if ok {
			ready = append(ready, objs[i])
		}
	}
	return ready
}

// PeerClosed reports, without reading or blocking, whether the peer has
// closed the Conn (or shut down its sending side), even while frames it
// sent before are still unread. A server that has stopped reading from a
// connection (backpressure) uses it to notice that the client left. It is
// false for a Conn that cannot receive or is closed.
func (c *Conn) PeerClosed() bool {
	if c.checkRecv() != nil || c.rraw == nil {
		return false
	}
	closed := false
	c.rraw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := pollFDs(fds, 0); err == nil && n > 0 {
			closed = fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return closed
}
