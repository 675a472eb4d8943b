// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"context"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/multiproc/multiproc/internal/base/valenc"
)

func (t *Task[A, R]) mapOpts(opts []MapOption) mapOptions {
	var o mapOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// chunks splits in (a []A of n tasks) into chunks of cs tasks.
func (p *Pool) chunks(j *job, in any, n, cs, base int) ([]*chunk, error) {
	nc := (n + cs - 1) / cs
	out := make([]*chunk, 0, nc)
	m := chunkMaker{p: p, j: j, hint: nc}
	for i := 0; i < n; i += cs {
		e := min(i+cs, n)
		c, err := m.make(base+i, in, i, e-i)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Map runs the task on every item of in and returns the results in input
// order (Python's Pool.map). The default chunksize is
// ceil(len(in) / (4 × workers)). Map waits for every task, then returns
// the error of the failed task with the lowest index (no fail-fast, as in
// Python); the results of the tasks that succeeded are filled in even
// then. When ctx ends, Map stops dispatching the call's tasks, cancels the
// running ones (see the package documentation) and returns ctx.Err().
// r is a *Pool, or any other Runner (a cluster pool).
func (t *Task[A, R]) Map(ctx context.Context, r Runner, in []A, opts ...MapOption) ([]R, error) {
	e := engineOf(r)
	o := t.mapOpts(opts)
	cs := o.chunksize
	if cs < 1 {
		w := 4 * e.slots()
		cs = (len(in) + w - 1) / w
		cs = max(cs, 1)
	}
	s := &mapSink[R]{codec: t.out, res: make([]R, len(in)), remaining: len(in), done: make(chan struct{}), progress: o.progress, errIdx: -1}
	j, err := e.newJobIn(ctx, t.info, s, new(job))
	if err != nil {
		return nil, err
	}
	s.e, s.j = e, j
	j.lazyIn = true // Map holds in, unchanged, until the job ends
	if len(in) == 0 {
		e.endJob(j, nil)
		return []R{}, nil
	}
	cks, err := e.chunks(j, in, len(in), cs, 0)
	if err != nil {
		e.endJob(j, nil)
		return nil, err
	}
	e.submit(cks...)
	select {
	case <-s.done:
	case <-ctx.Done():
		e.endJob(j, ctx.Err())
		<-s.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted != nil {
		return nil, s.aborted
	}
	return s.res, s.err
}

// Starmap is Map for a task of several arguments (Register2,
// Register3, Register4): Python's Pool.starmap. Go has no variadic type
// parameters, so a task has one argument type and a task of n arguments
// takes an ArgsN struct; Starmap is Map over a slice of them, for any A,
// and keeps Python's name. Its type parameters are inferred:
//
//	Starmap(ctx, p, volume, []pool.Args3[int, int, int]{{1, 2, 3}, {4, 5, 6}})
func Starmap[A, R any](ctx context.Context, r Runner, t *Task[A, R], in []A, opts ...MapOption) ([]R, error) {
	return t.Map(ctx, r, in, opts...)
}

type mapSink[R any] struct {
	codec     valenc.Run[R]
	e         engine
	j         *job
	mu        sync.Mutex
	res       []R
	err       error
	errIdx    int
	failed    int
	remaining int
	finished  bool
	aborted   error
	done      chan struct{}
	progress  func(Progress)
}

func (s *mapSink[R]) record(idx int, err error) {
	s.failed++
	if s.errIdx < 0 || idx < s.errIdx {
		s.err, s.errIdx = err, idx
	}
}

func (s *mapSink[R]) deliver(c *chunk, out any, errs []idxErr, all error) {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	if out != nil {
		copy(s.res[c.start:c.start+c.n], out.([]R))
	}
	s.settleLocked(c, errs, all)
}

// deliverEncoded decodes a chunk's results straight into the result
// slice. When they cannot be decoded, it returns the error and changes
// nothing.
func (s *mapSink[R]) deliverEncoded(c *chunk, b []byte, errs []idxErr) error {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return nil
	}
	if err := valenc.DecodeInto(s.codec, b, s.res[c.start:c.start+c.n]); err != nil {
		s.mu.Unlock()
		return err
	}
	s.settleLocked(c, errs, nil)
	return nil
}

// settleLocked counts a chunk's outcome, its results already stored.
// Called with mu held; it unlocks it.
func (s *mapSink[R]) settleLocked(c *chunk, errs []idxErr, all error) {
	for _, e := range errs {
		s.record(c.start+e.idx, e.err)
	}
	if all != nil {
		s.record(c.start, all)
		s.failed += c.n - 1
	}
	s.remaining -= c.n
	if s.progress != nil {
		s.progress(Progress{Done: len(s.res) - s.remaining, Failed: s.failed, Total: len(s.res)})
	}
	end := s.remaining == 0
	if end {
		s.finished = true
		close(s.done)
	}
	s.mu.Unlock()
	if end {
		s.e.endJob(s.j, nil)
	}
}

func (s *mapSink[R]) abort(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return
	}
	s.finished = true
	s.aborted = err
	close(s.done)
}

// chunkRes is one chunk's outcome in a stream.
type chunkRes[R any] struct {
	start, n int
	out      []R
	errs     []idxErr
	all      error
}

type streamSink[R any] struct {
	mu       sync.Mutex
	ordered  bool
	ready    map[int]*chunkRes[R] // ordered: by start
	fifo     []*chunkRes[R]       // unordered
	notify   chan struct{}
	aborted  error
	progress func(Progress)
	done     int
	failed   int
	total    int
}

func (s *streamSink[R]) deliver(c *chunk, out any, errs []idxErr, all error) {
	r := &chunkRes[R]{start: c.start, n: c.n, errs: errs, all: all}
	if out != nil {
		r.out = out.([]R)
	}
	s.mu.Lock()
	if s.aborted != nil {
		s.mu.Unlock()
		return
	}
	if s.ordered {
		s.ready[c.start] = r
	} else {
		s.fifo = append(s.fifo, r)
	}
	s.done += c.n
	if all != nil {
		s.failed += c.n
	} else {
		s.failed += len(errs)
	}
	if s.progress != nil {
		s.progress(Progress{Done: s.done, Failed: s.failed, Total: s.total})
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *streamSink[R]) abort(err error) {
	s.mu.Lock()
	if s.aborted == nil {
		s.aborted = err
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// next waits for the chunk starting at start (ordered) or any chunk.
func (s *streamSink[R]) next(ctx context.Context, start int) (*chunkRes[R], error) {
	for {
		s.mu.Lock()
		if s.aborted != nil {
			err := s.aborted
			s.mu.Unlock()
			return nil, err
		}
		if s.ordered {
			if r, ok := s.ready[start]; ok {
				delete(s.ready, start)
				s.mu.Unlock()
				return r, nil
			}
		} else if len(s.fifo) > 0 {
			r := s.fifo[0]
			s.fifo[0] = nil
			s.fifo = s.fifo[1:]
			s.mu.Unlock()
			return r, nil
		}
		s.mu.Unlock()
		select {
		case <-s.notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Imap returns the results of the task over the items of in, in input
// order, as a stream (Python's Pool.imap): each element is a result and
// nil, or the zero R and the task's error; the stream goes on after a
// failed task. in is read lazily, BufferSize chunks ahead of the
// consumer, so an endless input works in bounded memory. The default
// chunksize is 1. Stopping the iteration early (break) cancels the tasks
// still running and returns at once; when ctx ends, the stream yields
// ctx.Err() and stops. If the pool is not running, the stream yields
// ErrClosed.
func (t *Task[A, R]) Imap(ctx context.Context, r Runner, in iter.Seq[A], opts ...MapOption) iter.Seq2[R, error] {
	return t.imap(ctx, r, in, true, opts)
}

// ImapUnordered is Imap with the results in the order they complete
// (Python's Pool.imap_unordered).
func (t *Task[A, R]) ImapUnordered(ctx context.Context, r Runner, in iter.Seq[A], opts ...MapOption) iter.Seq2[R, error] {
	return t.imap(ctx, r, in, false, opts)
}

func (t *Task[A, R]) imap(ctx context.Context, r Runner, in iter.Seq[A], ordered bool, opts []MapOption) iter.Seq2[R, error] {
	o := t.mapOpts(opts)
	return func(yield func(R, error) bool) {
		var zero R
		e := engineOf(r)
		cs := max(o.chunksize, 1)
		window := o.buffersize
		if window < 1 {
			window = max(2*e.slots(), (minHeldTasks*2*e.slots()+cs-1)/cs)
		}
		s := &streamSink[R]{ordered: ordered, notify: make(chan struct{}, 1), progress: o.progress}
		if ordered {
			s.ready = map[int]*chunkRes[R]{}
		}
		j, err := e.newJobIn(ctx, t.info, s, new(job))
		if err != nil {
			yield(zero, err)
			return
		}
		defer e.endJob(j, nil)
		next, stop := iter.Pull(in)
		defer stop()
		// Tasks are counted, not chunks: a chunk's results may come back
		// in pieces (a task timeout splits its chunk).
		submitted, consumed := 0, 0
		inputDone := false
		for {
			// Top up to the window, in batches so that frames coalesce.
			if outstanding := (submitted - consumed + cs - 1) / cs; !inputDone && outstanding <= window/2 {
				want := (window - outstanding) * cs
				batch := make([]A, 0, min(want, 1024*cs))
				for len(batch) < want {
					a, ok := next()
					if !ok {
						inputDone = true
						break
					}
					batch = append(batch, a)
				}
				if len(batch) > 0 {
					cks, err := e.chunks(j, batch, len(batch), cs, submitted)
					if err != nil {
						yield(zero, err)
						return
					}
					submitted += len(batch)
					s.mu.Lock()
					s.total = submitted
					s.mu.Unlock()
					e.submit(cks...)
				}
			}
			if submitted == consumed {
				return
			}
			r, err := s.next(ctx, consumed)
			if err != nil {
				yield(zero, err)
				return
			}
			consumed += r.n
			ei := 0
			for i := range r.n {
				var te error
				if r.all != nil {
					te = r.all
				} else {
					for ei < len(r.errs) && r.errs[ei].idx < i {
						ei++
					}
					if ei < len(r.errs) && r.errs[ei].idx == i {
						te = r.errs[ei].err
					}
				}
				if te != nil {
					if !yield(zero, te) {
						return
					}
				} else if !yield(r.out[i], nil) {
					return
				}
			}
		}
	}
}

// Future is the pending result of one task (Submit, ApplyAsync).
type Future[R any] struct {
	mu        sync.Mutex    // guards done
	done      chan struct{} // made on demand (doneChan), closed by set
	fin       atomic.Bool   // set (under mu) when the result is
	r         R
	err       error
	once      sync.Once
	onSuccess func(R)
	onError   func(error)
	p         *Pool  // the local pool (nil on another Runner): direct reads and spins
	e         engine // where the task runs
	j         *job
	dec       valenc.Run[R] // decodes the result (process pools)
	// c is the task's chunk when the caller may receive its result
	// itself (see Pool.waitDirect); observed is set once Done or Ready
	// gave that up.
	c        *chunk
	observed atomic.Bool
	// sc is the task's chunk on a *Pool (Cancel looks where it is); call,
	// for MapAsync and StarmapAsync, cancels the call. notify (under mu)
	// receives the future when it has its result (AsCompleted).
	sc     *chunk
	call   func()
	notify []chan *Future[R]
}

// Done returns a channel closed when the result is ready.
func (f *Future[R]) Done() <-chan struct{} {
	f.observe()
	return f.doneChan()
}

// doneChan returns the channel closed when the result is set, making it
// on first use (most futures are waited on without one).
func (f *Future[R]) doneChan() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done == nil {
		f.done = make(chan struct{})
		if f.fin.Load() {
			close(f.done)
		}
	}
	return f.done
}

// observe makes the pool's reader goroutine receive the result: the
// caller may wait on Done instead of calling Get.
func (f *Future[R]) observe() {
	if f.c == nil || f.fin.Load() || f.observed.Swap(true) {
		return
	}
	f.p.mu.Lock()
	f.p.undirectLocked(f.c)
	f.p.mu.Unlock()
}

// Get waits for the result. When ctx ends first it returns ctx.Err(); the
// task goes on (cancel the context given to Submit to cancel it).
func (f *Future[R]) Get(ctx context.Context) (R, error) {
	if err := f.wait(ctx); err != nil {
		var zero R
		return zero, err
	}
	return f.r, f.err
}

// wait waits until the result is set or ctx ends (ctx.Err()).
func (f *Future[R]) wait(ctx context.Context) error {
	if f.fin.Load() {
		return nil
	}
	if f.c != nil && !f.observed.Load() {
		if err := f.p.waitDirect(ctx, f.j.ctx, f.c, &f.fin); err != nil {
			return err
		}
		if f.fin.Load() {
			return nil
		}
	}
	if f.spin() {
		return nil
	}
	select {
	case <-f.doneChan():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ready reports whether the result is ready.
func (f *Future[R]) Ready() bool {
	if f.fin.Load() {
		return true
	}
	f.observe()
	return f.fin.Load()
}

func (f *Future[R]) set(r R, err error) bool {
	first := false
	f.once.Do(func() {
		first = true
		f.r, f.err = r, err
		if err == nil && f.onSuccess != nil {
			f.onSuccess(r)
		}
		if err != nil && f.onError != nil {
			f.onError(err)
		}
		f.mu.Lock()
		f.fin.Store(true)
		if f.done != nil {
			close(f.done)
		}
		for _, ch := range f.notify {
			ch <- f // each has room for every future it waits for
		}
		f.notify = nil
		f.mu.Unlock()
	})
	return first
}

// spin waits up to futureSpin for the result before the caller parks on
// done: a result that comes back that soon is picked up without waking
// this goroutine through the scheduler (a futex wake of an idle thread,
// 10-20 µs on a virtual machine), which dominates the round trip of a
// short task. Each attempt is a sched_yield, which hands the CPU to any
// runnable thread first (the worker, the pool's reader). With a single
// CPU the caller does not spin at all. A spin that runs out turns
// spinning off for the pool's next spin.SkipAfterMiss waits, so a caller
// of long tasks burns at most futureSpin per that many waits. It reports
// whether the result is ready.
func (f *Future[R]) spin() bool {
	if f.fin.Load() {
		return true
	}
	if f.p == nil {
		return false
	}
	return f.p.be.spinWait(&f.fin)
}

// futureSpin bounds a caller's spin for a result (internal/base/spin's
// policy: a Bounded spin).
const futureSpin = 100 * time.Microsecond

func (f *Future[R]) deliver(c *chunk, out any, errs []idxErr, all error) {
	var r R
	err := all
	if err == nil && len(errs) > 0 {
		err = errs[0].err
	}
	if err == nil {
		r = out.([]R)[0]
	}
	if f.set(r, err) {
		f.e.endJob(f.j, nil)
	}
}

// deliverEncoded implements encodedSink: the result is decoded straight
// into the future.
func (f *Future[R]) deliverEncoded(c *chunk, b []byte, errs []idxErr) error {
	var r [1]R
	var err error
	if len(errs) > 0 {
		err = errs[0].err
	} else if err := valenc.DecodeInto(f.dec, b, r[:]); err != nil {
		return err
	}
	if f.set(r[0], err) {
		f.e.endJob(f.j, nil)
	}
	return nil
}

func (f *Future[R]) abort(err error) {
	var zero R
	f.set(zero, err)
}

// Submit runs the task on a (Python's apply_async) and returns its
// future at once. Cancelling ctx cancels the task. Submitting to a pool
// that is not running returns a Future whose error is ErrClosed.
func (t *Task[A, R]) Submit(ctx context.Context, r Runner, a A) *Future[R] {
	return t.ApplyAsync(ctx, r, a, nil, nil)
}

// ApplyAsync is Submit with callbacks: onSuccess with the result or
// onError with the error (either may be nil), called once, before Done is
// closed, from the goroutine that receives the result (they must return
// quickly).
func (t *Task[A, R]) ApplyAsync(ctx context.Context, r Runner, a A, onSuccess func(R), onError func(error)) *Future[R] {
	s := &submission[A, R]{in: [1]A{a}}
	f := &s.f
	e := engineOf(r)
	p, _ := r.(*Pool)
	f.onSuccess, f.onError, f.p, f.e, f.dec = onSuccess, onError, p, e, t.out
	j, err := e.newJobIn(ctx, t.info, f, &s.j)
	if err != nil {
		f.abort(err)
		return f
	}
	f.j = j
	c, err := e.oneChunk(j, s.in[:], &s.c)
	if err != nil {
		e.endJob(j, err)
		return f
	}
	if p != nil {
		f.sc = c
	}
	if p != nil && p.be.readsDirect() && onSuccess == nil && onError == nil && p.o.taskTimeout <= 0 {
		// The caller may receive the result itself (Pool.waitDirect).
		// Not with callbacks, which must run without a Get, nor with a
		// task timeout, whose Started messages must be received at once.
		c.direct = true
		f.c = c
	}
	s.cs[0] = c
	e.submit(s.cs[:]...) // a slice of s: the variadic call allocates nothing
	return f
}

// submission is what a Submit allocates: its future, job, chunk and
// input, together.
type submission[A, R any] struct {
	f  Future[R]
	j  job
	c  chunk
	cs [1]*chunk // c, as engine.submit takes it
	in [1]A
}

// Apply runs the task on a and waits for its result (Python's
// Pool.apply). When ctx ends first, the task is cancelled and Apply
// returns ctx.Err().
func (t *Task[A, R]) Apply(ctx context.Context, r Runner, a A) (R, error) {
	f := t.Submit(ctx, r, a)
	if f.wait(ctx) != nil {
		if f.j != nil {
			f.e.endJob(f.j, ctx.Err())
		}
		<-f.doneChan()
	}
	return f.r, f.err
}
