// SPDX-License-Identifier: Apache-2.0

// Parent side: calls (jobs), their chunks, the queue, and handing chunks
// to the workers with room.

package pool

import (
	"context"
	"fmt"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"
)

// job is one call: a Map, an Imap stream, a Submit.
type job struct {
	id    uint64
	task  *taskInfo
	sink  sink
	ctx   context.Context // the caller's context (ThreadPool: cancelled when the job ends)
	stop  func() bool     // stops the AfterFunc on the caller's ctx
	ended bool            // under Pool.mu
	// cancel cancels ctx (ThreadPool only).
	cancel context.CancelFunc
	// args keeps the descriptors of the shm handles in the job's
	// arguments open until it ends (handle_args.go); nil when its task's
	// argument carries none.
	args *argKeep
	// lazyIn says that the caller keeps the inputs unchanged until the
	// job ends (Map, which waits for it), so that a large chunk may be
	// encoded when it is sent (chunk.lazy).
	lazyIn bool
}

// sink receives a job's results. deliver and abort may be called
// concurrently from several goroutines; after abort, or once the last
// result arrived, further calls are ignored.
type sink interface {
	deliver(c *chunk, out any, errs []idxErr, all error)
	abort(err error)
}

// encodedSink is a sink that decodes a chunk's results itself (saving
// the intermediate []R). deliverEncoded returns the decoding error, if
// any, having changed nothing.
type encodedSink interface {
	deliverEncoded(c *chunk, b []byte, errs []idxErr) error
}

// chunk is a run of n consecutive tasks of a job, starting at input
// index start.
type chunk struct {
	job      *job
	seq      uint64
	start, n int
	in       any // []A, holding the chunk's tasks at [inOff, inOff+n)
	inOff    int
	frame    []byte // the encoded ToWorker message (process pools)
	// lazy, when not 0, is the size of the chunk's frame, which is not in
	// frame but encoded when it is sent (fill), straight into a segment
	// of shared memory: a large chunk of a pool with SharedMemory whose
	// inputs' size is known up front (bytes, strings, plain data). It is
	// encoded again if it is sent again (its worker died).
	lazy     int
	lazyData int // the size of its encoded inputs
	attempts int
	order    uint64 // dispatch order on its worker, which runs chunks in that order
	// w is the worker the chunk was last given to; direct says that the
	// caller may wait for it by receiving from w itself (Future.Get, see
	// readToken). Both under Pool.mu.
	w      *workerHandle
	direct bool
	// suspect marks a chunk whose worker died outside any task while it
	// held it (see blindDeath): it runs again alone on a worker, so that a
	// worker dying then tells whether it killed it; blind counts those
	// deaths (see maxBlindDeaths).
	suspect bool
	blind   int
	// unreached counts the deaths of workers that held the chunk but
	// had not begun to receive or decode it (see unreachedDeath).
	unreached int
	// done counts the chunk's first tasks whose results arrived in partial
	// results (under Pool.mu); only the others run again if the worker
	// dies.
	done int
}

const (
	// A worker is given more chunks while it holds fewer than
	// minHeldChunks chunks or fewer than minHeldTasks tasks: enough to
	// pipeline (and batch frames even at chunksize 1), few enough that a
	// dying worker loses little.
	minHeldChunks = 2
	minHeldTasks  = 128
	// maxHeldLazy is how many large chunks written into shared memory
	// when sent (chunk.lazy) a worker holds at most: one it runs and
	// the next, already in its segment. More would only hold segments
	// (each as large as its chunk) and keep the other workers waiting
	// while the parent writes them.
	maxHeldLazy = 2
	// resultBatch is how many result frames a worker buffers at most
	// before writing them.
	resultBatch = 64
)

// delivery is a chunk's outcome, handed to its job's sink outside Pool.mu.
type delivery struct {
	c    *chunk
	out  any
	errs []idxErr
	all  error
}

func deliverAll(ds []delivery) {
	for _, d := range ds {
		d.c.job.sink.deliver(d.c, d.out, d.errs, d.all)
	}
}

func flushAll(ws []*workerHandle) {
	for _, w := range ws {
		w.flush()
	}
}

// newJob registers a call. The job ends when its sink got every result
// (endJob), when ctx is done, or when the pool is terminated.
func (p *Pool) newJob(ctx context.Context, t *taskInfo, s sink) (*job, error) {
	return p.newJobIn(ctx, t, s, new(job))
}

// newJobIn is newJob in j's memory.
func (p *Pool) newJobIn(ctx context.Context, t *taskInfo, s sink, j *job) (*job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	*j = job{task: t, sink: s}
	j.ctx, j.cancel = p.be.jobContext(ctx)
	if t.encodeHandles != nil && p.be.frames() {
		j.args = new(argKeep)
	}
	p.mu.Lock()
	if p.state != stateRunning {
		p.mu.Unlock()
		if j.cancel != nil {
			j.cancel()
		}
		return nil, ErrClosed
	}
	p.jobSeq++
	j.id = p.jobSeq
	p.jobs[j.id] = j
	if ctx.Done() != nil {
		// Under p.mu: the function may run at once, and endJob reads
		// j.stop under p.mu.
		j.stop = context.AfterFunc(ctx, func() { p.endJob(j, ctx.Err()) })
	}
	p.mu.Unlock()
	return j, nil
}

// endJob ends a job: its queued chunks are dropped, workers running its
// chunks are told to cancel them (and killed if they do not within the
// kill grace), and its sink is aborted with cause (when not nil).
func (p *Pool) endJob(j *job, cause error) { p.endJobWith(j, cause, nil) }

// endJobWith is endJob that first calls before (unless the job had
// ended) with Pool.mu held, to look at the job's chunks as they are when
// it ends (Future.Cancel). It reports whether it ended the job.
func (p *Pool) endJobWith(j *job, cause error, before func()) bool {
	p.mu.Lock()
	if j.ended {
		p.mu.Unlock()
		return false
	}
	if before != nil {
		before()
	}
	j.ended = true
	delete(p.jobs, j.id)
	if j.args != nil {
		// Workers can no longer reopen the handles of its arguments; one
		// still running a task of it keeps what it attached.
		j.args.close()
	}
	fl := p.be.cancelJobLocked(j, nil)
	if fl == nil {
		var buf [2]*workerHandle
		fl = buf[:0]
	}
	fl = p.dispatchInto(fl)
	p.maybeDoneLocked()
	stop := j.stop
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
	if j.cancel != nil {
		j.cancel()
	}
	flushAll(fl)
	if cause != nil {
		j.sink.abort(cause)
	}
	return true
}

func (w *workerHandle) holds(j *job) bool {
	for _, c := range w.held {
		if c.job == j {
			return true
		}
	}
	return false
}

// newChunk makes a chunk of the n tasks in[off:off+n] (in is a []A),
// whose first has input index start.
func (p *Pool) newChunk(j *job, start int, in any, off, n int) (*chunk, error) {
	m := chunkMaker{p: p, j: j}
	return m.make(start, in, off, n)
}

// input returns the chunk's tasks (a []A).
func (c *chunk) input() any { return c.job.task.sliceIn(c.in, c.inOff, c.inOff+c.n) }

// chunkMaker makes the chunks of one call. Their structs and frames are
// cut from shared blocks, so a call of many small chunks allocates a
// block now and then instead of several objects per chunk. A block lives
// as long as any chunk cut from it.
type chunkMaker struct {
	p       *Pool
	j       *job
	hint    int     // how many chunks the call makes in all
	chunks  []chunk // the current block of chunk structs
	frames  []byte  // the current block of frames
	scratch []byte  // the inputs of the chunk being made, encoded
	one     *chunk  // when set, the memory of a lone chunk
}

const (
	maxChunkBlock = 256
	frameBlock    = 32 << 10
)

func (m *chunkMaker) make(start int, in any, off, n int) (*chunk, error) {
	j := m.j
	left := m.hint // chunks still to make, this one included
	var c *chunk
	if m.hint > 1 {
		if len(m.chunks) == 0 {
			m.chunks = make([]chunk, min(m.hint, maxChunkBlock))
		}
		c = &m.chunks[0]
		m.chunks = m.chunks[1:]
		m.hint--
	} else if m.one != nil {
		c, m.one = m.one, nil
	} else {
		c = new(chunk)
	}
	*c = chunk{job: j, start: start, n: n, in: in, inOff: off, seq: atomic.AddUint64(&chunkSeq, 1)}
	if m.p.be.frames() {
		if err := m.frame(c, left); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// frame makes c's frame (a process pool's chunk): a ToWorker message
// holding the chunk's inputs, encoded now, or, for a large chunk of a
// call that keeps its inputs (job.lazyIn), when it is written to shared
// memory (chunk.lazy). left counts the chunks m is still to make, c
// included.
func (m *chunkMaker) frame(c *chunk, left int) error {
	j := m.j
	if j.lazyIn && m.p.o.shm > 0 {
		if size, ok := j.task.sizeIn(c.in, c.inOff, c.inOff+c.n); ok {
			var head [128]byte
			if h := appendChunkHead(head[:0], c.seq, j.id, j.task.name, c.n, size); int64(len(h)+size) > m.p.o.shm {
				c.lazy, c.lazyData = len(h)+size, size
				return nil
			}
		}
	}
	// The inputs are encoded after room for the rest of the frame, so
	// that a large chunk's frame is made in place.
	room := chunkHeadroom(j.task.name)
	// The last chunk m makes (a Submit's lone one) gets its frame made in
	// place, in a buffer of its size when that is known up front: one
	// allocation, not a scratch buffer and a frame.
	last := left <= 1
	if cap(m.scratch) < room {
		size := 512
		if last {
			if n, ok := j.task.sizeIn(c.in, c.inOff, c.inOff+c.n); ok {
				size = room + n
			}
		}
		m.scratch = make([]byte, room, max(room, size))
	}
	var enc []byte
	var err error
	if j.args != nil {
		enc, err = j.task.encodeHandles(m.scratch[:room], c.in, c.inOff, c.inOff+c.n, j.args)
	} else {
		enc, err = j.task.encodeIn(m.scratch[:room], c.in, c.inOff, c.inOff+c.n)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: encoding arguments %d..%d: %w", ErrEncode, j.task.name, c.start, c.start+c.n-1, err)
	}
	data := enc[room:]
	need := len(data) + len(j.task.name) + 32
	if need > frameBlock/4 || last {
		var head [128]byte
		if h := appendChunkHead(head[:0], c.seq, j.id, j.task.name, c.n, len(data)); len(h) <= room {
			// In place: the head ends where the inputs start.
			copy(enc[room-len(h):], h)
			c.frame = enc[room-len(h) : len(enc) : len(enc)]
			if cap(enc) <= frameBlock {
				m.scratch = nil // enc is the frame now
			}
			return nil
		}
		c.frame = appendChunk(make([]byte, 0, need), c.seq, j.id, j.task.name, c.n, data)
	} else {
		if cap(m.frames)-len(m.frames) < need {
			// A block for the chunks still to make (a lone chunk gets
			// a frame of its own size).
			m.frames = make([]byte, 0, max(need, min(frameBlock, need*left)))
		}
		f := appendChunk(m.frames[len(m.frames):], c.seq, j.id, j.task.name, c.n, data)
		m.frames = m.frames[:len(m.frames)+len(f)]
		c.frame = f[:len(f):len(f)]
	}
	if cap(enc) <= frameBlock {
		m.scratch = enc[:0]
	}
	return nil
}

var chunkSeq uint64

// fill writes a lazy chunk's frame (c.lazy bytes) into dst: the inputs
// (c.lazyData bytes) are encoded straight into it, which is the segment
// the frame travels in.
func (c *chunk) fill(dst []byte) error {
	t := c.job.task
	h := appendChunkHead(dst[:0], c.seq, c.job.id, t.name, c.n, c.lazyData)
	if len(h)+c.lazyData != len(dst) {
		return fmt.Errorf("pool: chunk frame of %d bytes in %d", len(h)+c.lazyData, len(dst))
	}
	enc, err := t.encodeIn(dst[len(h):len(h)], c.in, c.inOff, c.inOff+c.n)
	if err != nil {
		return err
	}
	if len(enc) != c.lazyData || (len(enc) > 0 && &enc[0] != &dst[len(h)]) {
		// The inputs changed size since the chunk was made.
		return fmt.Errorf("%w: %s: the arguments changed while the call ran", ErrEncode, t.name)
	}
	return nil
}

// maxQbase is the largest queue memory a pool keeps for reuse.
const maxQbase = 1024

// setQueueLocked replaces the queue by q, clearing the old queue's
// entries first, so that its memory (which qbase may keep) holds no
// chunk. Called with Pool.mu held.
func (p *Pool) setQueueLocked(q []*chunk) {
	clear(p.queue)
	p.queue = q
}

// submit queues chunks of a job and hands out what workers can take.
func (p *Pool) submit(cs ...*chunk) {
	p.mu.Lock()
	if len(p.queue) == 0 {
		p.queue = p.qbase[:0]
	}
	if cap(p.queue)-len(p.queue) < len(cs) {
		p.setQueueLocked(append(p.queue, cs...))
	} else {
		p.queue = append(p.queue, cs...)
	}
	if len(p.queue) == len(cs) && cap(p.queue) <= maxQbase {
		p.qbase = p.queue[:0]
	}
	p.startWorkersLocked()
	var ds []delivery
	if len(p.ws) == 0 && p.starting == 0 {
		// A closed pool whose workers are all gone (their replacements
		// failed to start): nothing will run these.
		ds = p.failQueueLocked(ErrClosed)
	}
	var buf [2]*workerHandle
	fl := p.dispatchInto(buf[:0])
	p.mu.Unlock()
	deliverAll(ds)
	flushAll(fl)
}

func (w *workerHandle) hasRoom() bool {
	if w.gone || w.life != lifeActive || w.isolated || w.kill != killNone {
		return false
	}
	if m := w.p.o.maxTasks; m > 0 && w.sent >= m {
		return false
	}
	return len(w.held) < minHeldChunks || w.heldTasks < minHeldTasks
}

// dispatchLocked hands queued chunks to workers with room (the least
// loaded first), and asks idle workers that should stop to stop. It
// returns the workers whose frames must be flushed once Pool.mu is
// released.
func (p *Pool) dispatchLocked() []*workerHandle { return p.dispatchInto(nil) }

// dispatchInto is dispatchLocked appending to fl (a caller's buffer).
func (p *Pool) dispatchInto(fl []*workerHandle) []*workerHandle {
	mark := func(w *workerHandle) {
		if !w.needFlush {
			w.needFlush = true
			fl = append(fl, w)
		}
	}
	for len(p.queue) > 0 {
		c := p.queue[0]
		if c.job.ended {
			p.queue[0] = nil
			p.queue = p.queue[1:]
			continue
		}
		var best *workerHandle
		for _, w := range p.ws {
			if w.hasRoom() && (!c.suspect || len(w.held) == 0) && (c.lazy == 0 || w.heldLazy < maxHeldLazy) &&
				(best == nil || w.heldTasks < best.heldTasks) {
				best = w
			}
		}
		if best == nil {
			break
		}
		if c.suspect {
			best.isolated = true
		}
		p.queue[0] = nil
		p.queue = p.queue[1:]
		best.order++
		c.order = best.order
		c.w = best
		best.held[c.seq] = c
		best.heldTasks += c.n
		best.sent += c.n
		if c.lazy > 0 {
			best.heldLazy++
		}
		if m := p.o.maxTasks; m > 0 && best.sent >= m {
			best.life = lifeRetiring
			p.startWorkersLocked()
		}
		if p.be.sendLocked(best, c) {
			mark(best)
		}
	}
	if len(p.queue) == 0 {
		p.queue = nil
	}
	idleStop := p.state != stateRunning && len(p.jobs) == 0
	for _, w := range p.ws {
		if (w.life != lifeActive || p.state != stateRunning) && len(w.held) > 0 {
			// Whatever it holds is answered now, whether its callers
			// wait for it or not, so that it can stop.
			p.be.drainLocked(w)
		}
		if !w.gone && w.life != lifeStopping && len(w.held) == 0 && (w.life == lifeRetiring || idleStop) {
			w.life = lifeStopping
			if p.be.stopLocked(w) {
				mark(w)
			}
		}
	}
	for _, w := range fl {
		w.needFlush = false
	}
	return fl
}

// stopFrame is ToWorker{stop: {}}, coded by hand (no protobuf work at
// package initialisation, which every worker would pay).
var stopFrame = protowire.AppendVarint(protowire.AppendTag(nil, fToWorkerStop, protowire.BytesType), 0)

// view is tasks i..j-1 of c as a chunk to deliver results for (not to
// send).
func (c *chunk) view(i, j int) *chunk {
	if i == 0 && j == c.n {
		return c
	}
	return &chunk{job: c.job, seq: c.seq, start: c.start + i, n: j - i, in: c.in, inOff: c.inOff + i}
}
