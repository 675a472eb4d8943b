// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/multiproc/multiproc/ipc/remote"
)

// A Runner is where a Task's calls run. Map, Imap, ImapUnordered,
// Starmap, Apply, Submit and ApplyAsync take one, so switching where the
// work runs is a change of constructor: a *Pool runs it on worker
// processes (or goroutines) of this machine, and the cluster module's
// pool runs it on agents across hosts. Every call behaves the same on
// either: chunking, ordering, OnProgress, BufferSize, error reporting and
// context cancellation are the Task methods' own; a Runner only moves
// chunks of encoded tasks and brings their results back.
//
// A Runner other than *Pool implements StartCall: the Task methods split a
// call into chunks, encode each chunk's inputs in the task's encoding
// (the one a worker process decodes; it assumes the same binary at both
// ends) and Send them; the Runner has them run (for example with
// StartCall of a *Pool on another machine) and hands each chunk's
// ChunkResult to deliver.
type Runner interface {
	// Workers returns how many tasks the runner runs at once. Map's
	// default chunksize and Imap's read-ahead follow from it.
	Workers() int
	// StartCall opens one call (a Map, an Imap stream, a Submit) of the
	// task registered under task. Results of the chunks sent on it are
	// handed to deliver, from any goroutine, once per chunk (or in
	// pieces that together cover the chunk). When ctx ends, the Runner
	// cancels the call's running tasks; the Task methods then stop
	// waiting on their own.
	StartCall(ctx context.Context, task string, deliver func(ChunkResult)) (Call, error)
}

// A Call is one call opened by Runner.StartCall.
type Call interface {
	// Send submits n consecutive tasks, the first at index start of the
	// call, with inputs in the task's argument encoding. It may block
	// while the Runner applies back-pressure, until the call's context
	// ends. An error fails those tasks.
	Send(start, n int, inputs []byte) error
	// Close ends the call: its queued chunks are dropped, its running
	// tasks are cancelled, and no more results are delivered.
	Close()
}

// A BatchCall is a Call that also takes many chunks at once: Map hands
// over all of its chunks in one SendBatch, so that a Runner that moves
// them over a network may group small ones into fewer messages (the
// cluster module's pool does). Each chunk still gets its own results.
type BatchCall interface {
	Call
	// SendBatch sends chunks in order, as Send would each. It returns
	// how many were sent: when that is less than len(chunks), chunk n
	// failed with err (its tasks fail) and the caller goes on with the
	// chunks after it.
	SendBatch(chunks []ChunkIn) (n int, err error)
}

// ChunkIn is a chunk handed to BatchCall.SendBatch: N consecutive tasks
// of a call, the first at index Start, with inputs in the task's argument
// encoding.
type ChunkIn struct {
	Start, N int
	Inputs   []byte
}

// ChunkResult is the outcome of n consecutive tasks of a call, starting at
// index Start.
type ChunkResult struct {
	Start, N int
	// Outputs holds the N results in the task's result encoding (the
	// zero value for a failed task). It may be nil when every task
	// failed.
	Outputs []byte
	// Failed lists the tasks that failed, by index within the chunk.
	Failed []Failure
	// Err, when set, is the error of every task of the chunk (a worker
	// died, the pool was terminated...); Outputs and Failed are ignored.
	Err error
}

// Failure is the error of task Index of a chunk (counted from the
// chunk's first task).
type Failure struct {
	Index int
	Err   error
}

// engine is what the Task methods need from where they run: the *Pool
// itself (its worker machinery, with direct reads and frames made ahead),
// or otherRunner, which adapts any other Runner.
type engine interface {
	slots() int
	newJobIn(ctx context.Context, t *taskInfo, s sink, j *job) (*job, error)
	endJob(j *job, cause error)
	chunks(j *job, in any, n, cs, base int) ([]*chunk, error)
	oneChunk(j *job, in any, c *chunk) (*chunk, error)
	submit(cs ...*chunk)
}

func engineOf(r Runner) engine {
	if p, ok := r.(*Pool); ok {
		return p
	}
	return &otherRunner{r: r}
}

func (p *Pool) slots() int { return p.o.workers }

func (p *Pool) oneChunk(j *job, in any, c *chunk) (*chunk, error) {
	m := chunkMaker{p: p, j: j, one: c}
	return m.make(0, in, 0, 1)
}

// otherRunner runs one call (one job) on a Runner other than *Pool. A chunk's
// frame holds its encoded inputs.
type otherRunner struct {
	r     Runner
	call  Call
	j     *job
	mu    sync.Mutex
	ended bool
}

func (e *otherRunner) slots() int { return max(e.r.Workers(), 1) }

func (e *otherRunner) newJobIn(ctx context.Context, t *taskInfo, s sink, j *job) (*job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	*j = job{task: t, sink: s, ctx: ctx}
	e.j = j
	call, err := e.r.StartCall(ctx, t.name, e.receive)
	if err != nil {
		return nil, err
	}
	e.call = call
	if ctx.Done() != nil {
		// Under e.mu: the function may run at once, and endJob reads
		// j.stop.
		e.mu.Lock()
		j.stop = context.AfterFunc(ctx, func() { e.endJob(j, ctx.Err()) })
		e.mu.Unlock()
	}
	return j, nil
}

func (e *otherRunner) endJob(j *job, cause error) {
	e.mu.Lock()
	if e.ended {
		e.mu.Unlock()
		return
	}
	e.ended = true
	stop := j.stop
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
	e.call.Close()
	if cause != nil {
		j.sink.abort(cause)
	}
}

func (e *otherRunner) chunks(j *job, in any, n, cs, base int) ([]*chunk, error) {
	nc := (n + cs - 1) / cs
	mem := make([]chunk, nc)
	out := make([]*chunk, 0, nc)
	var buf []byte
	if size, ok := j.task.sizeIn(in, 0, n); ok {
		// One allocation, not a buffer doubling through every big
		// argument (a cluster Map of 8 MiB []byte).
		buf = make([]byte, 0, size)
	}
	ends := make([]int, 0, nc)
	for i := 0; i < n; i += cs {
		k := min(i+cs, n)
		var err error
		if buf, err = j.task.encodeIn(buf, in, i, k); err != nil {
			return nil, fmt.Errorf("%w: %s: encoding arguments %d..%d: %w", ErrEncode, j.task.name, base+i, base+k-1, err)
		}
		c := &mem[len(out)]
		*c = chunk{job: j, start: base + i, n: k - i, in: in, inOff: i}
		out = append(out, c)
		ends = append(ends, len(buf))
	}
	at := 0
	for i, c := range out {
		c.frame = buf[at:ends[i]:ends[i]]
		at = ends[i]
	}
	return out, nil
}

func (e *otherRunner) oneChunk(j *job, in any, c *chunk) (*chunk, error) {
	b, err := j.task.encodeIn(nil, in, 0, 1)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: encoding the argument: %v", ErrEncode, j.task.name, err)
	}
	*c = chunk{job: j, n: 1, in: in, frame: b}
	return c, nil
}

func (e *otherRunner) submit(cs ...*chunk) {
	if bc, ok := e.call.(BatchCall); ok && len(cs) > 1 {
		in := make([]ChunkIn, len(cs))
		for i, c := range cs {
			in[i] = ChunkIn{Start: c.start, N: c.n, Inputs: c.frame}
		}
		for len(in) > 0 {
			n, err := bc.SendBatch(in)
			if n >= len(in) {
				return
			}
			e.receive(ChunkResult{Start: in[n].Start, N: in[n].N, Err: err})
			in = in[n+1:]
		}
		return
	}
	for _, c := range cs {
		if err := e.call.Send(c.start, c.n, c.frame); err != nil {
			e.receive(ChunkResult{Start: c.start, N: c.n, Err: err})
		}
	}
}

// receive hands a chunk's result to the call's sink.
func (e *otherRunner) receive(r ChunkResult) {
	e.mu.Lock()
	ended := e.ended
	e.mu.Unlock()
	if ended || r.N <= 0 {
		return
	}
	j := e.j
	c := &chunk{job: j, start: r.Start, n: r.N}
	if r.Err != nil {
		j.sink.deliver(c, nil, nil, r.Err)
		return
	}
	var errs []idxErr
	for _, f := range r.Failed {
		if f.Index >= 0 && f.Index < r.N && f.Err != nil {
			errs = append(errs, idxErr{f.Index, f.Err})
		}
	}
	slices.SortFunc(errs, func(a, b idxErr) int { return a.idx - b.idx })
	if len(errs) == r.N && len(r.Outputs) == 0 {
		j.sink.deliver(c, nil, errs, nil)
		return
	}
	var out any
	var err error
	if es, ok := j.sink.(encodedSink); ok {
		if err = es.deliverEncoded(c, r.Outputs, errs); err == nil {
			return
		}
	} else {
		out, err = j.task.decodeOut(r.Outputs, r.N)
	}
	if err != nil {
		j.sink.deliver(c, nil, nil, &RemoteError{Task: j.task.name, Index: c.start,
			Report: remote.ReportOf(fmt.Errorf("%w: decoding the results: %w", ErrEncode, err))})
		return
	}
	j.sink.deliver(c, out, errs, nil)
}

// StartCall implements Runner: it opens a call of the task registered
// under task, whose chunks arrive already encoded (Call.Send). It is how
// a Runner that moves chunks elsewhere (the cluster module's agents) runs
// them in a local pool, without decoding them first. Each chunk sent gets
// one ChunkResult, whole, with the tasks' errors as the pool reports them
// (*RemoteError with Index counted from the chunk's first task,
// *WorkerDiedError, *TimeoutError...), or, if the pool is terminated or
// ctx ends first, one whose Err says so. It returns ErrNotRegistered if no
// task has that name, and ErrClosed if the pool is not running.
func (p *Pool) StartCall(ctx context.Context, task string, deliver func(ChunkResult)) (Call, error) {
	t := lookupTask(task)
	if t == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotRegistered, task)
	}
	pc := &poolCall{p: p, t: t, emit: deliver}
	j, err := p.newJob(ctx, t, (*poolSink)(pc))
	if err != nil {
		return nil, err
	}
	pc.j = j
	return pc, nil
}

// poolCall is a call opened by Pool.StartCall. Its job's sink (poolSink)
// gathers the pieces of each chunk sent (a task timeout splits a chunk)
// and delivers whole chunks.
type poolCall struct {
	p    *Pool
	t    *taskInfo
	j    *job
	emit func(ChunkResult)

	mu      sync.Mutex
	pending []*sentChunk
	done    bool
}

type sentChunk struct {
	start, n, left int
	pieces         []piece
}

// piece is the outcome of tasks [start, start+n) of a sent chunk
// (counted from the call's first task).
type piece struct {
	start, n int
	enc      []byte // encoded results, or
	out      any    // decoded results ([]R), or neither
	errs     []idxErr
	all      error
}

func (pc *poolCall) Send(start, n int, inputs []byte) error {
	if n <= 0 {
		return fmt.Errorf("pool: Send of %d tasks", n)
	}
	p := pc.p
	c := &chunk{job: pc.j, start: start, n: n, seq: atomic.AddUint64(&chunkSeq, 1)}
	if err := p.be.prepareSent(c, inputs); err != nil {
		return err
	}
	pc.mu.Lock()
	if pc.done {
		pc.mu.Unlock()
		return ErrClosed
	}
	pc.pending = append(pc.pending, &sentChunk{start: start, n: n, left: n})
	pc.mu.Unlock()
	p.submit(c)
	return nil
}

// decodeSent decodes the inputs of c, a chunk sent encoded (Call.Send),
// into c.in.
func (c *chunk) decodeSent(inputs []byte) error {
	t := c.job.task
	in, err := t.decodeIn(inputs, c.n)
	if err != nil {
		return &RemoteError{Task: t.name, Index: c.start, Pid: selfPid,
			Report: remote.ReportOf(fmt.Errorf("%w: decoding the arguments: %w", ErrEncode, err))}
	}
	c.in = in
	return nil
}

func (pc *poolCall) Close() {
	pc.mu.Lock()
	pc.done = true
	pc.pending = nil
	pc.mu.Unlock()
	pc.p.endJob(pc.j, nil)
}

// poolSink is a poolCall's face as its job's sink.
type poolSink poolCall

func (ps *poolSink) deliverEncoded(c *chunk, b []byte, errs []idxErr) error {
	// b is the pool's receive buffer: keep a copy.
	(*poolCall)(ps).add(piece{start: c.start, n: c.n, enc: append([]byte(nil), b...), errs: errs})
	return nil
}

func (ps *poolSink) deliver(c *chunk, out any, errs []idxErr, all error) {
	(*poolCall)(ps).add(piece{start: c.start, n: c.n, out: out, errs: errs, all: all})
}

func (ps *poolSink) abort(err error) { (*poolCall)(ps).abort(err) }

func (pc *poolCall) abort(err error) {
	pc.mu.Lock()
	pend := pc.pending
	pc.pending = nil
	pc.done = true
	pc.mu.Unlock()
	for _, s := range pend {
		pc.emit(ChunkResult{Start: s.start, N: s.n, Err: err})
	}
}

// add records a piece of a sent chunk and delivers the chunk once every
// piece of it is in.
func (pc *poolCall) add(pe piece) {
	pc.mu.Lock()
	i := slices.IndexFunc(pc.pending, func(s *sentChunk) bool {
		return pe.start >= s.start && pe.start < s.start+s.n
	})
	if i < 0 {
		pc.mu.Unlock()
		return
	}
	s := pc.pending[i]
	s.pieces = append(s.pieces, pe)
	s.left -= pe.n
	if s.left > 0 {
		pc.mu.Unlock()
		return
	}
	pc.pending = slices.Delete(pc.pending, i, i+1)
	pc.mu.Unlock()
	pc.emit(pc.merge(s))
}

// merge makes one ChunkResult of a sent chunk's pieces.
func (pc *poolCall) merge(s *sentChunk) ChunkResult {
	r := ChunkResult{Start: s.start, N: s.n}
	if len(s.pieces) == 1 && s.pieces[0].all != nil {
		r.Err = s.pieces[0].all
		return r
	}
	for _, pe := range s.pieces {
		off := pe.start - s.start
		if pe.all != nil {
			for i := range pe.n {
				r.Failed = append(r.Failed, Failure{Index: off + i, Err: pe.all})
			}
			continue
		}
		for _, e := range pe.errs {
			r.Failed = append(r.Failed, Failure{Index: off + e.idx, Err: e.err})
		}
	}
	slices.SortFunc(r.Failed, func(a, b Failure) int { return a.Index - b.Index })
	if len(s.pieces) == 1 && s.pieces[0].enc != nil {
		r.Outputs = s.pieces[0].enc
		return r
	}
	// Several pieces (or decoded results): decode them into one []R and
	// encode it whole.
	var full reflect.Value
	for _, pe := range s.pieces {
		out := pe.out
		if pe.enc != nil && len(pe.errs) < pe.n {
			v, err := pc.t.decodeOut(pe.enc, pe.n)
			if err != nil {
				return ChunkResult{Start: s.start, N: s.n, Err: &RemoteError{Task: pc.t.name, Index: pe.start, Pid: selfPid,
					Report: remote.ReportOf(fmt.Errorf("%w: decoding the results: %w", ErrEncode, err))}}
			}
			out = v
		}
		if out == nil {
			continue
		}
		v := reflect.ValueOf(out)
		if !full.IsValid() {
			full = reflect.MakeSlice(v.Type(), s.n, s.n)
		}
		off := pe.start - s.start
		reflect.Copy(full.Slice(off, off+pe.n), v)
	}
	if full.IsValid() {
		b, err := pc.t.encodeOut(nil, full.Interface())
		if err != nil {
			return ChunkResult{Start: s.start, N: s.n, Err: &RemoteError{Task: pc.t.name, Index: s.start, Pid: selfPid,
				Report: remote.ReportOf(fmt.Errorf("%w: encoding the results: %w", ErrEncode, err))}}
		}
		r.Outputs = b
	}
	return r
}
