// SPDX-License-Identifier: Apache-2.0

// What a concurrent.futures user expects of futures: Cancel, waiting on
// several (AsCompleted, WaitFirst, WaitAll), a shutdown that cancels
// what is pending, and asynchronous Map and Starmap.

package pool

import (
	"context"
	"errors"
	"iter"
)

// ErrCancelled is the error of a future that Cancel cancelled, and of
// the tasks that Shutdown(ctx, true) dropped (Python's CancelledError).
var ErrCancelled = errors.New("pool: cancelled")

// CancelOutcome says what Future.Cancel did.
type CancelOutcome int

const (
	// NotCancelled: the future already had its result (or got it while
	// Cancel ran); nothing changed.
	NotCancelled CancelOutcome = iota
	// CancelledQueued: no worker had taken the task; it was removed from
	// the queue and never runs (Python's cancel() returning True).
	CancelledQueued
	// CancelledRunning: a worker had the task, running or sent to it
	// ahead (the pool keeps a few chunks in flight per worker); its
	// context was cancelled (a worker whose task does not return within
	// KillGrace is killed and replaced). The task may have done part of
	// its work. On a Runner
	// other than *Pool, and for MapAsync and StarmapAsync, every
	// cancellation of a pending future is reported so.
	CancelledRunning
)

func (o CancelOutcome) String() string {
	switch o {
	case CancelledQueued:
		return "cancelled while queued"
	case CancelledRunning:
		return "cancelled while running"
	}
	return "not cancelled"
}

// Cancel cancels the future's task and reports what happened: a task
// still queued is removed (CancelledQueued), a task a worker holds has
// its context cancelled (CancelledRunning), and a future that has its
// result is left as it is (NotCancelled). A cancelled future's Get
// returns ErrCancelled at once, without waiting for a running task to
// return; callbacks (ApplyAsync's onError) get ErrCancelled. A Get that
// was already waiting when Cancel ran may be receiving the result from
// the worker itself: it returns once the worker answers the cancellation
// (at once for a task that honours its context, at the latest when the
// worker is killed KillGrace later).
func (f *Future[R]) Cancel() CancelOutcome {
	if f.fin.Load() {
		return NotCancelled
	}
	if f.call != nil {
		// MapAsync, StarmapAsync: the call ends through its context.
		f.call()
		<-f.doneChan()
		if errors.Is(f.err, ErrCancelled) {
			return CancelledRunning
		}
		return NotCancelled
	}
	if f.j == nil {
		return NotCancelled
	}
	out := CancelledRunning
	if p := f.p; p != nil && f.sc != nil {
		c := f.sc
		p.endJobWith(f.j, nil, func() {
			if w := c.w; w == nil || w.gone || w.held[c.seq] != c {
				out = CancelledQueued
			}
		})
	} else {
		f.e.endJob(f.j, nil)
	}
	var zero R
	if !f.set(zero, ErrCancelled) {
		return NotCancelled
	}
	return out
}

// Cancelled reports whether Cancel cancelled the future.
func (f *Future[R]) Cancelled() bool { return f.fin.Load() && errors.Is(f.err, ErrCancelled) }

// whenDone arranges for f to be sent on ch once it has its result (at
// once if it has it). ch must have room for it.
func (f *Future[R]) whenDone(ch chan *Future[R]) {
	f.observe()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fin.Load() {
		ch <- f
		return
	}
	f.notify = append(f.notify, ch)
}

// AsCompleted yields the futures as they complete, each once (Python's
// as_completed). When ctx ends first, the sequence stops: check
// ctx.Err() after the loop. Breaking out of the loop leaves the futures
// as they are.
func AsCompleted[R any](ctx context.Context, fs ...*Future[R]) iter.Seq[*Future[R]] {
	return func(yield func(*Future[R]) bool) {
		ch := make(chan *Future[R], len(fs))
		seen := make(map[*Future[R]]bool, len(fs))
		n := 0
		for _, f := range fs {
			if f != nil && !seen[f] {
				seen[f] = true
				n++
				f.whenDone(ch)
			}
		}
		for range n {
			// A future that has its result is yielded even when ctx
			// has ended too.
			select {
			case f := <-ch:
				if !yield(f) {
					return
				}
				continue
			default:
			}
			select {
			case f := <-ch:
				if !yield(f) {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}
}

// WaitFirst waits until one of the futures has its result and returns
// it (Python's wait with FIRST_COMPLETED), or returns ctx.Err() when ctx
// ends first.
func WaitFirst[R any](ctx context.Context, fs ...*Future[R]) (*Future[R], error) {
	if len(fs) == 0 {
		return nil, errors.New("pool: WaitFirst of no future")
	}
	for f := range AsCompleted(ctx, fs...) {
		return f, nil
	}
	return nil, ctx.Err()
}

// WaitAll waits until every future has its result (Python's wait with
// ALL_COMPLETED), or returns ctx.Err() when ctx ends first. It returns
// nil even when tasks failed: their futures hold the errors.
func WaitAll[R any](ctx context.Context, fs ...*Future[R]) error {
	for _, f := range fs {
		if f == nil {
			continue
		}
		if err := f.wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Shutdown stops the pool as Python's Executor.shutdown(wait=True,
// cancel_futures=cancelPending) does: it closes the pool (Close); with
// cancelPending, the tasks no worker has taken yet fail with ErrCancelled
// (their futures' Get returns it; a Map returns it for its first such
// task) while the running ones finish; then it waits for the workers to
// exit (Join). ctx bounds the wait only.
func (p *Pool) Shutdown(ctx context.Context, cancelPending bool) error {
	p.Close()
	if cancelPending {
		p.mu.Lock()
		ds := p.failQueueLocked(ErrCancelled)
		fl := p.dispatchLocked()
		p.maybeDoneLocked()
		p.mu.Unlock()
		deliverAll(ds)
		flushAll(fl)
	}
	return p.Join(ctx)
}

// asyncCall runs call in a goroutine and returns a future of its result
// that Cancel cancels through call's context.
func asyncCall[T any](ctx context.Context, call func(context.Context) (T, error)) *Future[T] {
	cctx, cancel := context.WithCancelCause(ctx)
	f := &Future[T]{}
	f.call = func() { cancel(ErrCancelled) }
	go func() {
		defer cancel(nil)
		r, err := call(cctx)
		if err != nil && errors.Is(context.Cause(cctx), ErrCancelled) {
			err = ErrCancelled
		}
		f.set(r, err)
	}()
	return f
}

// MapAsync is Map that returns at once (Python's map_async): the future
// holds the results, in input order, and the error Map would return.
// Cancel ends the call (its queued tasks are dropped, its running ones
// cancelled) and its Get then returns ErrCancelled.
func (t *Task[A, R]) MapAsync(ctx context.Context, r Runner, in []A, opts ...MapOption) *Future[[]R] {
	return asyncCall(ctx, func(ctx context.Context) ([]R, error) { return t.Map(ctx, r, in, opts...) })
}

// StarmapAsync is Starmap that returns at once (Python's
// starmap_async); see MapAsync.
func StarmapAsync[A, R any](ctx context.Context, r Runner, t *Task[A, R], in []A, opts ...MapOption) *Future[[]R] {
	return t.MapAsync(ctx, r, in, opts...)
}
