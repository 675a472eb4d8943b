// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"errors"
	"fmt"

	"github.com/multiproc/multiproc/ipc/pickle"
	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// Queues and synchronisation objects for CPython clients (pyserver_types.go).

// ---------------------------------------------------------------- Queue

func pyQueuePut(pc *pyCallCtx) (any, error) {
	a, err := pc.bind(1, "item", "block", "timeout")
	if err != nil {
		return nil, err
	}
	v, err := toPB(a[0])
	if err != nil {
		return nil, err
	}
	block := pyTruth(or(a[1], true))
	if !block {
		return pyResult(pc.goCall("Put", v, boolValue(false)))
	}
	_, err = pc.blockingCall(or(a[2], nil), "Put", v, boolValue(true))
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, ErrFull
	}
	return nil, err
}

func pyQueuePutNowait(pc *pyCallCtx) (any, error) {
	a, err := pyValueArg(pc, 1, "item")
	if err != nil {
		return nil, err
	}
	return pyResult(pc.goCall("Put", a[0], boolValue(false)))
}

func pyQueueGet(pc *pyCallCtx) (any, error) {
	a, err := pc.bind(0, "block", "timeout")
	if err != nil {
		return nil, err
	}
	if !pyTruth(or(a[0], true)) {
		return pyResult(pc.goCall("Get", boolValue(false)))
	}
	v, err := pc.blockingCall(or(a[1], nil), "Get", boolValue(true))
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, ErrEmpty
	}
	return pyResult(v, err)
}

func pyQueueGetNowait(pc *pyCallCtx) (any, error) {
	if _, err := pc.bind(0); err != nil {
		return nil, err
	}
	return pyResult(pc.goCall("Get", boolValue(false)))
}

// ---------------------------------------------------------------- locks, Event, Condition

// pyAcquire is acquire(blocking=True, timeout=None): True, or False when
// the lock was not taken (non-blocking, or the timeout passed). A lock
// whose previous holder died is acquired and reported as True: CPython's
// acquire has no way to say more (a Go client is told ErrOwnerDead).
func pyAcquire(pc *pyCallCtx) (any, error) {
	a, err := pc.bind(0, "blocking", "timeout")
	if err != nil {
		return nil, err
	}
	if !pyTruth(or(a[0], true)) {
		if !absent(a[1]) && a[1] != nil {
			return nil, pyExc("ValueError", "can't specify a timeout for a non-blocking call")
		}
		v, err := pc.goCall("Acquire", boolValue(false))
		if errors.Is(err, ErrOwnerDead) {
			return true, nil
		}
		return pyResult(v, err)
	}
	v, err := pc.blockingCall(or(a[1], nil), "Acquire", boolValue(true))
	switch {
	case errors.Is(err, ErrOwnerDead):
		return true, nil
	case errors.Is(err, context.DeadlineExceeded):
		return false, nil
	}
	return pyResult(v, err)
}

func pyRelease(pc *pyCallCtx) (any, error) {
	if _, err := pc.bind(0); err != nil {
		return nil, err
	}
	_, err := pc.goCall("Release")
	switch {
	case errors.Is(err, ErrNotHeld):
		if pc.e.ti.name == "Lock" {
			return nil, pyExc("RuntimeError", "release unlocked lock")
		}
		return nil, pyExc("RuntimeError", "cannot release un-acquired lock")
	case errors.Is(err, ErrOverRelease):
		return nil, pyExc("ValueError", "Semaphore released too many times")
	}
	return nil, err
}

func pyEventWait(pc *pyCallCtx) (any, error) {
	a, err := pc.bind(0, "timeout")
	if err != nil {
		return nil, err
	}
	_, err = pc.blockingCall(or(a[0], nil), "Wait")
	if errors.Is(err, context.DeadlineExceeded) {
		return false, nil
	}
	if err != nil {
		return nil, err
	}
	return true, nil
}

func pyCondWait(pc *pyCallCtx) (any, error) {
	a, err := pc.bind(0, "timeout")
	if err != nil {
		return nil, err
	}
	_, err = pc.blockingCall(or(a[0], nil), "Wait")
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return false, nil
	case errors.Is(err, ErrNotHeld):
		return nil, pyExc("RuntimeError", "cannot wait on un-acquired lock")
	case err != nil:
		return nil, err
	}
	return true, nil
}

func pyCondNotify(pc *pyCallCtx) (any, error) {
	a, err := pc.bind(0, "n")
	if err != nil {
		return nil, err
	}
	n, ok := or(a[0], int64(1)).(int64)
	if !ok {
		return nil, pyExc("TypeError", "n must be an int")
	}
	_, err = pc.goCall("Notify", intValue(n))
	if errors.Is(err, ErrNotHeld) {
		return nil, pyExc("RuntimeError", "cannot notify on un-acquired lock")
	}
	return nil, err
}

// ---------------------------------------------------------------- Barrier

func pyBarrierArgs(args pickle.Tuple, kwds *pickle.Dict) ([]*pb.Value, error) {
	// Barrier(parties, action=None, timeout=None): no action crosses the
	// wire, and a default timeout is not kept (wait takes its own).
	a, err := bindPy("Barrier", args, kwds, 1, "parties", "action", "timeout")
	if err != nil {
		return nil, err
	}
	if v := or(a[1], nil); v != nil {
		return nil, pyExc("TypeError", "a Go manager's Barrier takes no action")
	}
	n, ok := a[0].(int64)
	if !ok {
		return nil, pyExc("TypeError", "parties must be an int")
	}
	if n < 1 {
		return nil, pyExc("ValueError", "parties must be >= 1")
	}
	return []*pb.Value{intValue(n)}, nil
}

// pyBarrierWait is wait(timeout=None): the arrival index. A timeout
// breaks the barrier, as in CPython; a broken barrier raises
// RuntimeError (BrokenBarrierError's base: the allowlist has no
// threading classes).
func pyBarrierWait(pc *pyCallCtx) (any, error) {
	a, err := pc.bind(0, "timeout")
	if err != nil {
		return nil, err
	}
	v, err := pc.blockingCall(or(a[0], nil), "Wait")
	if errors.Is(err, ErrBrokenBarrier) || errors.Is(err, context.DeadlineExceeded) {
		return nil, pyExc("RuntimeError", "BrokenBarrierError: the barrier is broken")
	}
	return pyResult(v, err)
}

func pyBarrierAttr(pc *pyCallCtx) (any, error) {
	a, err := pc.bind(1, "name")
	if err != nil {
		return nil, err
	}
	switch a[0] {
	case "parties":
		return pyResult(pc.goCall("Parties"))
	case "n_waiting":
		return pyResult(pc.goCall("NWaiting"))
	case "broken":
		return pyResult(pc.goCall("Broken"))
	}
	return nil, pyExc("AttributeError", fmt.Sprintf("'Barrier' object has no attribute %s", pickle.Repr(a[0])))
}
