// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/process"
	pb "github.com/multiproc/multiproc/proto/pool/v1"
	"github.com/multiproc/multiproc/shm"
)

var selfPid = os.Getpid()

func contextBackground() context.Context { return context.Background() }

// Pool runs registered tasks on worker processes (New) or goroutines
// (NewThreadPool). All methods, and the Task methods that take a Pool,
// are safe for concurrent use by any number of goroutines.
type Pool struct {
	o      options
	log    *zap.Logger
	thread bool
	cfg    []byte // encoded WorkerConfig

	mu       sync.Mutex
	state    int
	ws       []*worker
	starting int
	queue    []*chunk
	qbase    []*chunk // queue's memory, reused once it is empty (entries are cleared as they leave)
	jobs     map[uint64]*job
	jobSeq   uint64
	nworker  int
	done     chan struct{}
	doneOnce sync.Once
	wg       sync.WaitGroup
	// spinSkip counts the Future waits that park at once after a spin
	// that ran out (see Future.spin).
	spinSkip atomic.Int32
	// life ends (endLife) when the pool no longer wants workers: it was
	// terminated, or closed with nothing left to run. It bounds the
	// starts of replacements.
	life    context.Context
	endLife context.CancelFunc
}

const (
	stateRunning = iota
	stateClosing
	stateTerminated
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
	attempts int
	order    uint64 // dispatch order on its worker, which runs chunks in that order
	// w is the worker the chunk was last given to; direct says that the
	// caller may wait for it by receiving from w itself (Future.Get, see
	// worker.tok). Both under Pool.mu.
	w      *worker
	direct bool
	// suspect marks a chunk held by a worker that died before it reached
	// it while not running a task (its progress word names none): it runs
	// again alone on a worker, so that a worker dying then tells which
	// chunk killed it; blind counts those deaths (see maxBlindDeaths).
	suspect bool
	blind   int
	// done counts the chunk's first tasks whose results arrived in partial
	// results (under Pool.mu); only the others run again if the worker
	// dies.
	done int
}

type killReason int

const (
	killNone killReason = iota
	killTimeout
	killCancel
	killTerminate
)

// worker is the pool's side of one worker process (or goroutine).
type worker struct {
	p    *Pool
	proc *process.Process
	conn *ipc.Conn
	pid  int
	name string
	// prog holds the worker's progress word (see progress.go), read once
	// the worker is dead.
	prog *shm.Segment
	word *uint64

	// Under Pool.mu:
	held      map[uint64]*chunk
	heldTasks int
	sent      int
	order     uint64
	retiring  bool
	stopSent  bool
	isolated  bool // runs a suspect chunk alone
	gone      bool // its connection ended or it is being removed
	dead      bool
	kill      killReason
	timedSeq  uint64
	timedIdx  int
	runGen    uint64
	runTimer  *time.Timer
	killTimer *time.Timer
	ageTimer  *time.Timer
	needFlush bool

	// The read token (under Pool.mu) says who receives from conn. The
	// reader goroutine (readLoop) takes it when loopWanted: a frame was
	// pushed that no caller waits on directly; it gives it back when the
	// worker holds nothing. A lone Submit's chunk given to a worker whose
	// token is free (and holds nothing else) does not want the loop: the
	// caller's Future.Get takes the token and receives its result itself
	// (a direct read), which saves the hand-off from the reader goroutine
	// to the caller, a thread wake-up per task. Whoever gives up the token
	// while something is left to receive hands it to the reader goroutine.
	tok        int
	loopWanted bool
	wake       chan struct{} // capacity 1: wakes the reader goroutine
	rfd        int           // conn's descriptor, polled by a direct reader's spin; -1 if unknown
	rbuf       []byte        // the token holder's receive buffer

	outMu   sync.Mutex
	out     [][]byte
	spare   [][]byte
	writing bool

	tq chan *chunk // ThreadPool: the worker goroutine's queue; closed to stop it
}

// Values of worker.tok.
const (
	tokFree = iota
	tokLoop
	tokDirect
)

const (
	// A worker is given more chunks while it holds fewer than
	// minHeldChunks chunks or fewer than minHeldTasks tasks: enough to
	// pipeline (and batch frames even at chunksize 1), few enough that a
	// dying worker loses little.
	minHeldChunks = 2
	minHeldTasks  = 128
	// resultBatch is how many result frames a worker buffers at most
	// before writing them.
	resultBatch = 64
)

// New starts a pool of worker processes and waits until each is ready
// (its initializer, if any, has run). ctx bounds the start only. If a
// worker cannot be started, the ones already started are stopped and New
// returns a *StartError (or an option's validation error).
//
// Every program that uses a Pool must call process.Init() first thing in
// main (and TestMain): workers are re-executions of the binary.
func New(ctx context.Context, opts ...Option) (*Pool, error) {
	p, err := newPool(opts, false)
	if err != nil {
		return nil, err
	}
	cfg := &pb.WorkerConfig{TaskTimeoutNs: int64(p.o.taskTimeout)}
	if p.o.initTask != nil {
		cfg.Initializer, cfg.InitializerInput = p.o.initTask.name, p.o.initInput
	}
	if p.cfg, err = proto.Marshal(cfg); err != nil {
		return nil, err
	}
	ws := make([]*worker, p.o.workers)
	errs := make([]error, p.o.workers)
	var wg sync.WaitGroup
	for i := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws[i], errs[i] = p.startWorker(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, w := range ws {
			if w != nil {
				w.proc.Kill()
				w.proc.Wait()
				w.conn.Close()
				w.prog.Close()
			}
		}
		for _, e := range errs {
			if e != nil {
				return nil, e
			}
		}
	}
	p.mu.Lock()
	for _, w := range ws {
		p.addWorkerLocked(w)
	}
	p.mu.Unlock()
	return p, nil
}

// NewThreadPool returns a pool whose workers are goroutines of this
// process (Python's ThreadPool): the same Tasks and calls as a process
// Pool, no encoding, no crash isolation. A task's error reaches the caller
// as the task returned it (a panic as a *RemoteError). MaxTasksPerChild,
// MaxMemory, MaxWorkerAge, Retries and Starter have no effect;
// TaskTimeout only sets the tasks' deadline.
func NewThreadPool(ctx context.Context, opts ...Option) (*Pool, error) {
	p, err := newPool(opts, true)
	if err != nil {
		return nil, err
	}
	if p.o.initLocal != nil {
		for range p.o.workers {
			if err := p.o.initLocal(); err != nil {
				return nil, &StartError{Err: err}
			}
		}
	}
	p.mu.Lock()
	for range p.o.workers {
		w := &worker{p: p, held: map[uint64]*chunk{}, tq: make(chan *chunk, 4*minHeldTasks), pid: selfPid}
		p.addWorkerLocked(w)
	}
	p.mu.Unlock()
	return p, nil
}

func newPool(opts []Option, thread bool) (*Pool, error) {
	o := options{
		starter:   process.DefaultStarter(),
		log:       zap.NewNop(),
		killGrace: time.Second,
	}
	for _, f := range opts {
		if err := f(&o); err != nil {
			return nil, err
		}
	}
	if o.workers == 0 {
		// Only when Workers did not say: CPUCount reads the cgroup
		// files, about 0.1 ms at every New otherwise.
		o.workers = process.CPUCount()
	}
	p := &Pool{o: o, log: o.log.Named("pool"), thread: thread, jobs: map[uint64]*job{}, done: make(chan struct{})}
	p.life, p.endLife = context.WithCancel(context.Background())
	return p, nil
}

// Workers returns the number of workers the pool keeps.
func (p *Pool) Workers() int { return p.o.workers }

// Pids returns the process ids of the live workers (for a ThreadPool,
// this process's pid once per worker).
func (p *Pool) Pids() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pids []int
	for _, w := range p.ws {
		if !w.gone {
			pids = append(pids, w.pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// startWorker starts one worker process and waits for its Ready message.
func (p *Pool) startWorker(ctx context.Context) (w *worker, err error) {
	prog, err := shm.New(progressSize)
	if err != nil {
		return nil, &StartError{Err: err}
	}
	defer func() {
		if err != nil {
			prog.Close()
		}
	}()
	mine, theirs, err := ipc.Pipe(true)
	if err != nil {
		return nil, &StartError{Err: err}
	}
	p.mu.Lock()
	p.nworker++
	name := fmt.Sprintf("PoolWorker-%d", p.nworker)
	p.mu.Unlock()
	proc := workerFunc.Process(theirs, p.cfg, prog)
	proc.Name = name
	proc.Daemon = true
	proc.Starter = p.o.starter
	proc.Logger = p.o.log
	// The pool sends SIGKILL KillGrace after SIGTERM; the worker's own
	// grace is longer, so that a task that ignores SIGTERM is stopped by
	// that SIGKILL, as documented, not by a race between the two.
	proc.TermGrace = 2 * p.o.killGrace
	proc.Env = append([]string{"GOMAXPROCS=1"}, p.o.env...)
	err = proc.Start(ctx)
	theirs.Close()
	if err != nil {
		mine.Close()
		return nil, &StartError{Err: err}
	}
	fail := func(err error) (*worker, error) {
		proc.Kill()
		if werr := proc.Wait(); err == nil {
			err = werr
		}
		mine.Close()
		return nil, &StartError{Err: err}
	}
	b, err := mine.RecvBytes(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		// The worker died before it was ready: its exit says why.
		werr := proc.Wait()
		mine.Close()
		var xe *process.ExitError
		switch {
		case errors.As(werr, &xe) && xe.Signal != 0:
			// Killed (the OOM killer, chaos tooling): a death, reported
			// as every worker death is.
			werr = &WorkerDiedError{Pid: xe.Pid, Code: xe.Code, Signal: xe.Signal, BeforeReady: true}
		case werr == nil:
			werr = err
		}
		return nil, &StartError{Err: werr}
	}
	var m pb.FromWorker
	if err := proto.Unmarshal(b, &m); err != nil {
		return fail(fmt.Errorf("pool: bad ready message: %w", err))
	}
	r := m.GetReady()
	if r == nil {
		return fail(errors.New("pool: the worker's first message is not Ready"))
	}
	if r.InitError != nil {
		ie := r.InitError
		rerr := &RemoteError{Task: p.o.initTask.name, Pid: proc.Pid(), Report: remote.Decode(ie)}
		proc.Wait()
		mine.Close()
		return nil, &StartError{Err: fmt.Errorf("initializer: %w", rerr)}
	}
	w = &worker{p: p, proc: proc, conn: mine, pid: proc.Pid(), name: name, held: map[uint64]*chunk{},
		wake: make(chan struct{}, 1), rfd: -1, rbuf: make([]byte, readBuf), prog: prog, word: progressWord(prog)}
	if fd, ready, err := mine.WaitFD(); err == nil && !ready {
		w.rfd = int(fd)
	}
	p.log.Debug("worker started", zap.String("name", name), zap.Int("pid", w.pid))
	return w, nil
}

// addWorkerLocked puts a ready worker to work.
func (p *Pool) addWorkerLocked(w *worker) {
	p.ws = append(p.ws, w)
	p.wg.Add(1)
	if p.thread {
		go w.threadLoop()
		return
	}
	go w.readLoop()
	p.wg.Add(1)
	go w.watchExit()
	if p.o.maxAge > 0 {
		w.ageTimer = time.AfterFunc(p.o.maxAge, func() {
			p.mu.Lock()
			if !w.gone && !w.retiring {
				w.retiring = true
				p.startWorkersLocked()
			}
			fl := p.dispatchLocked()
			p.mu.Unlock()
			flushAll(fl)
		})
	}
}

// startWorkersLocked starts replacements until the pool has its number
// of active (not retiring) workers, counting those being started.
func (p *Pool) startWorkersLocked() {
	if !p.needWorkersLocked() {
		return
	}
	active := p.starting
	for _, w := range p.ws {
		if !w.gone && !w.retiring {
			active++
		}
	}
	for ; active < p.o.workers; active++ {
		p.starting++
		p.wg.Add(1)
		go p.keepStarting()
	}
}

// needWorkersLocked reports whether the pool wants workers: it runs, or it
// was closed with work still to finish.
func (p *Pool) needWorkersLocked() bool {
	return !p.thread && p.state != stateTerminated && !(p.state == stateClosing && len(p.jobs) == 0) && !p.isDone()
}

const (
	// A replacement that cannot be started (its Starter fails, or the
	// worker dies before it reports ready: the OOM killer, chaos tooling)
	// is started again after startBackoffMin, doubling up to
	// startBackoffMax, for as long as the pool needs it.
	startBackoffMin = 10 * time.Millisecond
	startBackoffMax = 2 * time.Second
	// maxStartAttempts is how many starts in a row may fail while no
	// worker can run the queued tasks before those tasks fail with the
	// start's error (a *StartError). While another worker can run them,
	// nothing fails: the starts go on.
	maxStartAttempts = 5
)

// keepStarting starts one worker for the pool, again and again with
// backoff until one reports ready or the pool no longer needs it. It holds
// one count of Pool.starting until it returns.
func (p *Pool) keepStarting() {
	defer p.wg.Done()
	delay := startBackoffMin
	for attempt := 1; ; attempt++ {
		w, err := p.startWorker(p.life)
		var se *StartError
		if errors.As(err, &se) {
			err = se.Err
		}
		p.mu.Lock()
		if err == nil {
			p.starting--
			if p.state == stateTerminated {
				defer func() {
					w.proc.Kill()
					w.proc.Wait()
					w.conn.Close()
					w.prog.Close()
				}()
			} else {
				p.addWorkerLocked(w)
			}
			fl := p.dispatchLocked()
			p.maybeDoneLocked()
			p.mu.Unlock()
			flushAll(fl)
			return
		}
		if !p.needWorkersLocked() {
			p.starting--
			p.maybeDoneLocked()
			p.mu.Unlock()
			return
		}
		p.log.Warn("cannot start a worker; trying again", zap.Int("attempt", attempt), zap.Duration("backoff", delay), zap.Error(err))
		if attempt >= maxStartAttempts && !p.canRunLocked() {
			// No worker can run what is queued, and none could be started:
			// what waits fails with one error, and this start ends (the
			// next submission tries again).
			p.starting--
			ds := p.failQueueLocked(&StartError{Err: err, Attempts: attempt})
			fl := p.dispatchLocked()
			p.maybeDoneLocked()
			p.mu.Unlock()
			deliverAll(ds)
			flushAll(fl)
			return
		}
		p.mu.Unlock()
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-p.life.Done():
			t.Stop()
		}
		delay = min(2*delay, startBackoffMax)
	}
}

// canRunLocked reports whether a worker of the pool can take queued tasks
// now or once it has room.
func (p *Pool) canRunLocked() bool {
	for _, w := range p.ws {
		if !w.gone && !w.retiring && w.kill == killNone {
			return true
		}
	}
	return false
}

// failQueueLocked fails the queued tasks with err: no worker is left to
// run them.
func (p *Pool) failQueueLocked(err error) []delivery {
	var ds []delivery
	for _, c := range p.queue {
		if !c.job.ended {
			ds = append(ds, delivery{c: c, all: err})
		}
	}
	p.setQueueLocked(nil)
	return ds
}

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

func flushAll(ws []*worker) {
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
	*j = job{task: t, sink: s, ctx: ctx}
	if p.thread {
		j.ctx, j.cancel = context.WithCancel(ctx)
	}
	p.mu.Lock()
	if p.state != stateRunning {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	p.jobSeq++
	j.id = p.jobSeq
	p.jobs[j.id] = j
	p.mu.Unlock()
	if ctx.Done() != nil {
		j.stop = context.AfterFunc(ctx, func() { p.endJob(j, ctx.Err()) })
	}
	return j, nil
}

// endJob ends a job: its queued chunks are dropped, workers running its
// chunks are told to cancel them (and killed if they do not within the
// kill grace), and its sink is aborted with cause (when not nil).
func (p *Pool) endJob(j *job, cause error) {
	p.mu.Lock()
	if j.ended {
		p.mu.Unlock()
		return
	}
	j.ended = true
	delete(p.jobs, j.id)
	var fl []*worker
	if !p.thread {
		var cancelFrame []byte
		for _, w := range p.ws {
			if w.gone || !w.holds(j) {
				continue
			}
			if cancelFrame == nil {
				cancelFrame, _ = proto.Marshal(&pb.ToWorker{Msg: &pb.ToWorker_Cancel{Cancel: &pb.Cancel{Job: j.id}}})
			}
			w.push(cancelFrame)
			fl = append(fl, w)
			time.AfterFunc(p.o.killGrace, func() {
				p.mu.Lock()
				defer p.mu.Unlock()
				if !w.gone && w.kill == killNone && w.holds(j) {
					p.log.Info("killing a worker whose cancelled task does not return", zap.Int("pid", w.pid))
					w.kill = killCancel
					w.terminate()
				}
			})
		}
	}
	if fl == nil {
		var buf [2]*worker
		fl = buf[:0]
	}
	fl = p.dispatchInto(fl)
	p.maybeDoneLocked()
	p.mu.Unlock()
	if j.stop != nil {
		j.stop()
	}
	if j.cancel != nil {
		j.cancel()
	}
	flushAll(fl)
	if cause != nil {
		j.sink.abort(cause)
	}
}

func (w *worker) holds(j *job) bool {
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
	if m.p.thread {
		return c, nil
	}
	data, err := j.task.encodeIn(m.scratch[:0], in, off, off+n)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: encoding arguments %d..%d: %v", ErrEncode, j.task.name, start, start+n-1, err)
	}
	need := len(data) + len(j.task.name) + 32
	if need > frameBlock/4 {
		c.frame = appendChunk(make([]byte, 0, need), c.seq, j.id, j.task.name, n, data)
	} else {
		if cap(m.frames)-len(m.frames) < need {
			// A block for the chunks still to make (a lone chunk gets
			// a frame of its own size).
			m.frames = make([]byte, 0, max(need, min(frameBlock, need*left)))
		}
		f := appendChunk(m.frames[len(m.frames):], c.seq, j.id, j.task.name, n, data)
		m.frames = m.frames[:len(m.frames)+len(f)]
		c.frame = f[:len(f):len(f)]
	}
	if cap(data) <= frameBlock {
		m.scratch = data
	}
	return c, nil
}

var chunkSeq uint64

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
	var buf [2]*worker
	fl := p.dispatchInto(buf[:0])
	p.mu.Unlock()
	deliverAll(ds)
	flushAll(fl)
}

func (p *Pool) isDone() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (w *worker) hasRoom() bool {
	if w.gone || w.retiring || w.stopSent || w.isolated || w.kill != killNone {
		return false
	}
	if m := w.p.o.maxTasks; m > 0 && w.sent >= m && !w.p.thread {
		return false
	}
	return len(w.held) < minHeldChunks || w.heldTasks < minHeldTasks
}

// dispatchLocked hands queued chunks to workers with room (the least
// loaded first), and asks idle workers that should stop to stop. It
// returns the workers whose frames must be flushed once Pool.mu is
// released.
func (p *Pool) dispatchLocked() []*worker { return p.dispatchInto(nil) }

// dispatchInto is dispatchLocked appending to fl (a caller's buffer).
func (p *Pool) dispatchInto(fl []*worker) []*worker {
	mark := func(w *worker) {
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
		var best *worker
		for _, w := range p.ws {
			if w.hasRoom() && (!c.suspect || len(w.held) == 0) && (best == nil || w.heldTasks < best.heldTasks) {
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
		quiet := c.direct && len(best.held) == 0 && best.tok == tokFree && !best.loopWanted
		best.order++
		c.order = best.order
		c.w = best
		best.held[c.seq] = c
		best.heldTasks += c.n
		best.sent += c.n
		if m := p.o.maxTasks; m > 0 && best.sent >= m && !p.thread {
			best.retiring = true
			p.startWorkersLocked()
		}
		switch {
		case p.thread:
			best.tq <- c
		case quiet:
			best.pushQuiet(c.frame)
			mark(best)
		default:
			best.push(c.frame)
			mark(best)
		}
	}
	if len(p.queue) == 0 {
		p.queue = nil
	}
	idleStop := p.state != stateRunning && len(p.jobs) == 0
	for _, w := range p.ws {
		if (w.retiring || p.state != stateRunning) && len(w.held) > 0 && !p.thread {
			// Whatever it holds is received now, whether its callers
			// wait for it or not, so that it can stop.
			w.wantLoopLocked()
		}
		if !w.gone && !w.stopSent && len(w.held) == 0 && (w.retiring || idleStop) {
			w.stopSent = true
			if p.thread {
				close(w.tq)
			} else {
				w.push(stopFrame)
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

// push queues a frame for the worker (in order); flush writes them. The
// reader goroutine is to receive the answer. Called with Pool.mu held.
func (w *worker) push(frame []byte) {
	w.pushQuiet(frame)
	w.wantLoopLocked()
}

// pushQuiet is push for the chunk of a lone Submit whose caller may
// receive the result itself (see worker.tok).
func (w *worker) pushQuiet(frame []byte) {
	w.outMu.Lock()
	w.out = append(w.out, frame)
	w.outMu.Unlock()
}

// wantLoopLocked asks the reader goroutine to receive from the worker,
// waking it if the token is free (else the holder hands it over when it
// is done). Called with Pool.mu held.
func (w *worker) wantLoopLocked() {
	if w.loopWanted {
		return
	}
	w.loopWanted = true
	if w.tok == tokFree {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// releaseTokLocked gives back the read token, to the reader goroutine
// if anything is left to receive. Called with Pool.mu held.
func (w *worker) releaseTokLocked() {
	w.tok = tokFree
	if w.loopWanted || len(w.held) > 0 || w.stopSent || w.kill != killNone || w.gone {
		w.loopWanted = false
		w.wantLoopLocked()
	}
}

// undirectLocked makes the reader goroutine receive c's result: its
// caller will not (a callback, Done, or a wait that gave up reading).
// Called with Pool.mu held.
func (p *Pool) undirectLocked(c *chunk) {
	if !c.direct {
		return
	}
	c.direct = false
	if w := c.w; w != nil && w.held[c.seq] == c {
		w.wantLoopLocked()
	}
}

// flush writes the queued frames, several per system call. Whoever finds
// no write in progress writes; frames queued meanwhile are written by the
// same goroutine before it returns, so none is left behind.
func (w *worker) flush() {
	w.outMu.Lock()
	if w.writing || len(w.out) == 0 {
		w.outMu.Unlock()
		return
	}
	w.writing = true
	for len(w.out) > 0 {
		frames := w.out
		w.out = w.spare[:0]
		w.outMu.Unlock()
		err := w.conn.SendFrames(context.Background(), frames...)
		clear(frames)
		w.outMu.Lock()
		w.spare = frames
		if err != nil {
			// The worker is dying or dead: its reader sees the end of its
			// connection and the pool deals with the tasks it held.
			w.out = w.out[:0]
			w.outMu.Unlock()
			w.p.log.Debug("cannot write to a worker", zap.Int("pid", w.pid), zap.Error(err))
			w.proc.Kill()
			w.p.mu.Lock()
			w.wantLoopLocked()
			w.p.mu.Unlock()
			w.outMu.Lock()
			break
		}
	}
	w.writing = false
	w.outMu.Unlock()
}

// terminate sends SIGTERM, then SIGKILL after the kill grace. Called with
// Pool.mu held.
func (w *worker) terminate() {
	if w.proc == nil {
		return
	}
	w.proc.Terminate()
	if w.killTimer == nil {
		proc := w.proc
		w.killTimer = time.AfterFunc(w.p.o.killGrace, func() { proc.Kill() })
	}
}

// readLoop receives a worker's messages while it holds the read token
// (see worker.tok) until the connection ends (the worker exited or was
// killed), then reaps the worker and settles the tasks it held.
func (w *worker) readLoop() {
	p := w.p
	defer p.wg.Done()
	for {
		p.mu.Lock()
		for w.tok != tokFree || !w.loopWanted {
			p.mu.Unlock()
			<-w.wake
			p.mu.Lock()
		}
		w.tok = tokLoop
		p.mu.Unlock()
		if !w.receiveLoop() {
			break
		}
	}
	p.mu.Lock()
	w.gone = true
	p.mu.Unlock()
	// The connection ends when the worker exits; give it the kill grace
	// in case it only closed the connection.
	ctx, cancel := context.WithTimeout(context.Background(), p.o.killGrace)
	err := w.proc.Join(ctx)
	cancel()
	if ctx.Err() != nil && err == ctx.Err() {
		w.proc.Kill()
		err = w.proc.Join(context.Background())
	}
	code, _ := w.proc.ExitCode()
	w.proc.Close()
	w.conn.Close()
	p.workerGone(w, code, err)
}

// watchExit makes the reader goroutine receive from the worker once its
// process exits: the reader goroutine receives only while the worker
// holds work (see worker.tok), and the death of an idle worker must be
// seen at once too.
func (w *worker) watchExit() {
	defer w.p.wg.Done()
	w.proc.Join(context.Background())
	w.p.mu.Lock()
	w.wantLoopLocked()
	w.p.mu.Unlock()
}

// receiveLoop receives and handles messages until the worker holds
// nothing more (it gives the token back and returns true) or the
// connection ends (false).
func (w *worker) receiveLoop() bool {
	p := w.p
	for {
		b, err := w.recv(context.Background())
		if err != nil || !w.handleFrame(b) {
			return false
		}
		if !w.conn.Ready() {
			p.mu.Lock()
			fl := p.dispatchLocked()
			idle := len(w.held) == 0 && !w.stopSent && w.kill == killNone && !w.gone
			if idle {
				w.tok, w.loopWanted = tokFree, false
			}
			p.mu.Unlock()
			flushAll(fl)
			if idle {
				return true
			}
			// Let the goroutines just woken (callers waiting for results)
			// run on this P before this goroutine blocks in poll(2)
			// holding it.
			runtime.Gosched()
		}
	}
}

// recv receives one message into the token holder's buffer (reused:
// nothing keeps a reference to a message once it is handled; results
// and errors are decoded into fresh memory). Longer messages get memory
// of their own.
func (w *worker) recv(ctx context.Context) ([]byte, error) {
	n, err := w.conn.RecvBytesInto(ctx, w.rbuf)
	if tooShort, ok := err.(*ipc.BufferTooShortError); ok {
		return tooShort.Msg, nil
	}
	if err != nil {
		return nil, err
	}
	return w.rbuf[:n], nil
}

// handleFrame acts on one message from the worker. A malformed one gets
// the worker killed (false).
func (w *worker) handleFrame(b []byte) bool {
	r, isResult, m, err := parseFromWorker(b)
	if err != nil {
		w.p.log.Error("bad message from a worker; killing it", zap.Int("pid", w.pid), zap.Error(err))
		w.proc.Kill()
		return false
	}
	if isResult {
		if !w.onResult(&r) {
			return false
		}
	} else if s := m.GetStarted(); s != nil {
		w.onStarted(s)
	}
	return true
}

// waitDirect waits for the result of c, a lone Submit's chunk, by
// receiving from its worker itself while it may (see worker.tok), until
// fin is set. It returns ctx.Err() if ctx ends first, and nil when fin
// is set or reading directly is not possible (the caller then waits for
// the result the usual way). jctx is the job's context: when it ends,
// the job's end delivers the result.
func (p *Pool) waitDirect(ctx, jctx context.Context, c *chunk, fin *atomic.Bool) error {
	rctx := ctx
	switch {
	case ctx.Done() == nil:
		rctx = jctx
	case jctx.Done() != nil && jctx != ctx:
		// Two contexts to watch: not worth a merged one.
		p.mu.Lock()
		p.undirectLocked(c)
		p.mu.Unlock()
		return nil
	}
	p.mu.Lock()
	w := c.w
	if !c.direct || w == nil || w.held[c.seq] != c || w.tok != tokFree || w.loopWanted || w.gone {
		p.undirectLocked(c)
		p.mu.Unlock()
		return nil
	}
	w.tok = tokDirect
	p.mu.Unlock()
	var err error
	for !fin.Load() {
		p.spinReadable(w)
		b, rerr := w.recv(rctx)
		if rerr != nil {
			if rctx == ctx && ctx.Err() != nil {
				err = ctx.Err()
			}
			break
		}
		if !w.handleFrame(b) {
			break
		}
	}
	p.mu.Lock()
	c.direct = false
	w.releaseTokLocked()
	p.mu.Unlock()
	return err
}

// spinReadable waits up to futureSpin for the worker's connection to
// become readable before a direct reader blocks in a receive: an answer
// that comes back that soon is picked up without this thread sleeping
// and being woken (10-20 µs on a virtual machine), which dominates the
// round trip of a short task. With a single CPU it does not spin at all
// (the receive yields to the worker by itself). A spin that runs out
// turns spinning off for the pool's next spinSkipAfterMiss waits, so a
// caller of long tasks burns at most futureSpin per that many waits.
func (p *Pool) spinReadable(w *worker) {
	if w.rfd < 0 || !multiCPU {
		return
	}
	if p.spinSkip.Load() > 0 {
		p.spinSkip.Add(-1)
		return
	}
	if w.conn.Buffered() {
		return
	}
	if !spinPoll(w.rfd, futureSpin) {
		p.spinSkip.Store(spinSkipAfterMiss)
	}
}

// readable reports whether fd is readable (or hung up), without
// blocking. Like schedYield it is a raw system call.
func readable(fd int) bool {
	pfd := unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	n, _, errno := syscall.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1,
		uintptr(unsafe.Pointer(&zeroTimeout)), 0, 0, 0)
	return errno == 0 && n > 0
}

var zeroTimeout unix.Timespec

// spinPoll polls fd (without blocking) until it is readable or d has
// passed, and reports whether it became readable. Between two polls it
// calls sched_yield, which hands the CPU to any runnable thread first
// (the peer process, when it shares this CPU): the spin takes a CPU only
// while nothing else wants it, and never longer than d.
func spinPoll(fd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		if readable(fd) {
			return true
		}
		schedYield()
		if i%4 == 3 && time.Now().After(deadline) {
			return false
		}
	}
}

func (w *worker) onStarted(s *pb.Started) {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.held[s.Seq] == nil || p.o.taskTimeout <= 0 {
		return
	}
	w.runGen++
	gen, seq, idx := w.runGen, s.Seq, int(s.Index)
	if w.runTimer != nil {
		w.runTimer.Stop()
	}
	// A little slack lets a task that honours its context's deadline
	// return on its own first.
	w.runTimer = time.AfterFunc(p.o.taskTimeout+timeoutSlack, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if w.runGen != gen || w.gone || w.kill != killNone || w.held[seq] == nil {
			return
		}
		p.log.Info("task timed out; terminating its worker", zap.Int("pid", w.pid), zap.Duration("timeout", p.o.taskTimeout))
		w.kill = killTimeout
		w.timedSeq, w.timedIdx = seq, idx
		w.terminate()
	})
}

const timeoutSlack = 100 * time.Millisecond

// readBuf is the size of a worker reader's receive buffer; longer
// messages are received into memory of their own.
const readBuf = 4 << 10

// onResult settles a chunk a worker answered, or the part of it that a
// partial result covers. A result that does not fit its chunk (a part out
// of order) is a protocol error: false, and the worker is killed.
func (w *worker) onResult(r *resultMsg) bool {
	p := w.p
	p.mu.Lock()
	c := w.held[r.seq]
	if c == nil {
		p.mu.Unlock()
		return true
	}
	off, n, final := int(r.off), c.n-int(r.off), r.count == 0
	if !final {
		n = int(r.count)
	}
	if off != c.done || n <= 0 || off+n > c.n || (!final && off+n == c.n) {
		p.mu.Unlock()
		p.log.Error("a worker's result does not fit its chunk; killing it", zap.Int("pid", w.pid),
			zap.Int("offset", off), zap.Int("count", n), zap.Int("done", c.done), zap.Int("tasks", c.n))
		w.proc.Kill()
		return false
	}
	w.heldTasks -= n
	if final {
		delete(w.held, r.seq)
		if c.suspect {
			w.isolated = false
		}
		w.runGen++
		if w.runTimer != nil {
			w.runTimer.Stop()
			w.runTimer = nil
		}
	} else {
		c.done += n
	}
	ended := c.job.ended
	p.mu.Unlock()

	if final && p.o.maxMemory > 0 {
		if rss, err := rssOf(w.pid); err == nil && rss > p.o.maxMemory {
			p.mu.Lock()
			if !w.retiring {
				p.log.Info("worker passed its memory cap; retiring it", zap.Int("pid", w.pid), zap.Int64("rss", rss))
				w.retiring = true
				p.startWorkersLocked()
			}
			p.mu.Unlock()
		}
	}
	if ended || r.cancelled {
		return true
	}
	v := c.view(off, off+n)
	var errs []idxErr
	for _, te := range r.errs {
		e := te.Error
		i := int(te.Index) - off
		if e == nil || i < 0 || i >= n {
			continue
		}
		errs = append(errs, idxErr{i, &RemoteError{
			Task: c.job.task.name, Index: v.start + i, Pid: w.pid, Report: remote.Decode(e),
		}})
	}
	var out any
	var err error
	if es, ok := c.job.sink.(encodedSink); ok {
		if err = es.deliverEncoded(v, r.outputs, errs); err == nil {
			return true
		}
	} else {
		out, err = c.job.task.decodeOut(r.outputs, n)
	}
	if err != nil && len(errs) < n {
		c.job.sink.deliver(v, nil, nil, &RemoteError{Task: c.job.task.name, Index: v.start, Pid: w.pid,
			Report: remote.ReportOf(fmt.Errorf("%w: decoding the results: %w", ErrEncode, err))})
		return true
	}
	c.job.sink.deliver(v, out, errs, nil)
	return true
}

// workerGone settles the tasks a dead worker held and replaces it.
func (p *Pool) workerGone(w *worker, code int, exitErr error) {
	lp := readProgress(w.word)
	w.prog.Close()
	p.mu.Lock()
	w.dead = true
	w.gone = true
	for _, t := range []*time.Timer{w.runTimer, w.killTimer, w.ageTimer} {
		if t != nil {
			t.Stop()
		}
	}
	p.ws = slices.DeleteFunc(p.ws, func(x *worker) bool { return x == w })
	held := make([]*chunk, 0, len(w.held))
	for _, c := range w.held {
		held = append(held, c)
	}
	// Requeue in the order the worker got them.
	slices.SortFunc(held, func(a, b *chunk) int { return cmp.Compare(a.order, b.order) })
	w.held = nil
	unexpected := w.kill == killNone && !w.stopSent
	if unexpected && len(held) > 0 {
		p.log.Warn("worker died holding tasks", zap.Int("pid", w.pid), zap.Int("exitcode", code), zap.Error(exitErr))
	} else {
		p.log.Debug("worker exited", zap.Int("pid", w.pid), zap.Int("exitcode", code))
	}
	// The progress word says what the worker was doing: running a task of
	// a chunk it held (that task alone is charged), between two tasks of
	// one (nothing is charged), working on one outside its tasks (that
	// chunk is charged), or none of these (attributed false: it was idle,
	// or receiving).
	attributed := false
	for _, c := range held {
		if lp.on(c) && lp.state != markIdle {
			attributed = true
		}
	}
	d := deathSettler{p: p, w: w, code: code}
	for _, c := range held {
		if c.job.ended {
			continue
		}
		i, running := lp.task()
		switch {
		case w.kill == killTerminate:
		case w.kill == killTimeout && c.seq == w.timedSeq:
			d.splitAround(c, w.timedIdx, &TimeoutError{Pid: w.pid, Timeout: p.o.taskTimeout.String()})
		case w.kill != killNone || !unexpected:
			// Not this chunk's fault: run it again.
			d.requeueRest(c)
		case lp.on(c) && running && i >= c.done:
			// The task that was running: it alone is charged.
			d.splitAround(c, i, nil)
		case lp.on(c) && lp.state == markChunk:
			d.charge(c)
		case attributed || !lp.notReached(c):
			// Done, or not started while the worker was busy with another:
			// run again, uncharged.
			d.requeueRest(c)
		default:
			// The worker died outside any task before it reached this
			// chunk (receiving it, say): it runs again alone, uncharged,
			// so that further deaths tell whether it is to blame. A chunk
			// that kills its worker before it starts is charged on its
			// maxBlindDeaths-th such death, alone on the worker.
			c.blind++
			if c.suspect && len(held) == 1 && c.blind >= maxBlindDeaths {
				d.charge(c)
				break
			}
			c.suspect = true
			d.requeueRest(c)
		}
	}
	p.setQueueLocked(append(d.requeue, p.queue...))
	p.startWorkersLocked()
	fl := p.dispatchLocked()
	p.maybeDoneLocked()
	p.mu.Unlock()
	deliverAll(d.ds)
	flushAll(fl)
}

// maxBlindDeaths is how many deaths of its workers outside any task (see
// workerGone) a chunk is charged at, the last one alone on its worker: a
// chunk that kills every worker it reaches before it starts does not run
// forever, and a worker killed by chance before it started a chunk
// charges nothing.
const maxBlindDeaths = 3

// deathSettler collects what becomes of the chunks a dead worker held.
type deathSettler struct {
	p       *Pool
	w       *worker
	code    int
	ds      []delivery
	requeue []*chunk
}

// requeueRest runs again, uncharged, the tasks of c whose results have not
// arrived.
func (d *deathSettler) requeueRest(c *chunk) {
	if c.done == 0 {
		d.requeue = append(d.requeue, c)
		return
	}
	d.requeuePart(c, c.done, c.n)
}

func (d *deathSettler) requeuePart(c *chunk, i, j int) {
	if j <= i {
		return
	}
	sc, err := d.p.subChunk(c, i, j)
	if err != nil {
		d.ds = append(d.ds, delivery{c: c.view(i, j), all: err})
		return
	}
	sc.suspect, sc.blind = c.suspect, c.blind
	d.requeue = append(d.requeue, sc)
}

// splitAround charges task i of c (failing it with err when err is set)
// and runs the rest of its unanswered tasks again, uncharged.
func (d *deathSettler) splitAround(c *chunk, i int, err error) {
	d.requeuePart(c, c.done, i)
	switch {
	case err != nil:
		d.ds = append(d.ds, delivery{c: c.view(i, i+1), all: err})
	case c.done == i && i+1 == c.n:
		d.charge(c)
	default:
		if one, serr := d.p.subChunk(c, i, i+1); serr != nil {
			d.ds = append(d.ds, delivery{c: c.view(i, i+1), all: serr})
		} else {
			d.charge(one)
		}
	}
	d.requeuePart(c, i+1, c.n)
}

// charge counts an attempt against the unanswered tasks of c: they run
// again while retries are left, else fail with a *WorkerDiedError.
func (d *deathSettler) charge(c *chunk) {
	if c.attempts < d.p.o.retries {
		c.attempts++
		d.requeueRest(c)
		return
	}
	de := &WorkerDiedError{Pid: d.w.pid, Code: d.code, Attempts: c.attempts + 1}
	if d.code < 0 {
		de.Signal = signalOf(d.code)
	}
	d.ds = append(d.ds, delivery{c: c.view(c.done, c.n), all: de})
}

// view is tasks i..j-1 of c as a chunk to deliver results for (not to
// send).
func (c *chunk) view(i, j int) *chunk {
	if i == 0 && j == c.n {
		return c
	}
	return &chunk{job: c.job, seq: c.seq, start: c.start + i, n: j - i, in: c.in, inOff: c.inOff + i}
}

// subChunk returns tasks i..j-1 of c as a new chunk.
func (p *Pool) subChunk(c *chunk, i, j int) (*chunk, error) {
	if c.in == nil {
		// A chunk that arrived encoded (StartCall): its inputs are
		// decoded from its frame to be cut.
		m, ok, _, err := parseToWorker(c.frame)
		if err == nil && !ok {
			err = errBadMessage
		}
		if err != nil {
			return nil, err
		}
		in, err := c.job.task.decodeIn(m.inputs, c.n)
		if err != nil {
			return nil, err
		}
		c.in, c.inOff = in, 0
	}
	sc, err := p.newChunk(c.job, c.start+i, c.in, c.inOff+i, j-i)
	if err != nil {
		return nil, err
	}
	sc.attempts = c.attempts
	return sc, nil
}

// maybeDoneLocked closes done once a closed or terminated pool has no
// worker left.
func (p *Pool) maybeDoneLocked() {
	if p.state == stateTerminated || (p.state == stateClosing && len(p.jobs) == 0) {
		p.endLife()
	}
	if p.state == stateRunning || p.starting > 0 || len(p.ws) > 0 {
		return
	}
	p.doneOnce.Do(func() { close(p.done) })
}

// Close stops accepting work (submissions then fail with ErrClosed); the
// work already submitted is finished, then the workers exit. Call Join to
// wait for that. Close is idempotent, and a no-op after Terminate.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.state == stateRunning {
		p.state = stateClosing
	}
	fl := p.dispatchLocked()
	p.maybeDoneLocked()
	p.mu.Unlock()
	flushAll(fl)
	return nil
}

// Terminate stops the pool now: pending and running tasks fail with
// ErrTerminated, workers are sent SIGTERM (SIGKILL after the kill grace),
// and Terminate returns once they are gone. Idempotent.
func (p *Pool) Terminate() error {
	p.mu.Lock()
	if p.state == stateTerminated {
		p.mu.Unlock()
		return p.Join(context.Background())
	}
	p.state = stateTerminated
	var jobs []*job
	for _, j := range p.jobs {
		j.ended = true
		jobs = append(jobs, j)
	}
	clear(p.jobs)
	p.setQueueLocked(nil)
	for _, w := range p.ws {
		w.kill = killTerminate
		if p.thread {
			if !w.stopSent {
				w.stopSent = true
				close(w.tq)
			}
		} else {
			w.terminate()
			w.wantLoopLocked()
		}
	}
	p.maybeDoneLocked()
	p.mu.Unlock()
	for _, j := range jobs {
		if j.stop != nil {
			j.stop()
		}
		if j.cancel != nil {
			j.cancel()
		}
		j.sink.abort(ErrTerminated)
	}
	return p.Join(context.Background())
}

// Join waits until every worker of a closed or terminated pool has exited
// and the pool's goroutines are gone. It returns ErrRunning if neither
// Close nor Terminate was called, and ctx.Err() if ctx ends first.
func (p *Pool) Join(ctx context.Context) error {
	p.mu.Lock()
	st := p.state
	p.mu.Unlock()
	if st == stateRunning {
		return ErrRunning
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.wg.Wait()
	return nil
}

// Wait is Close followed by Join(context.Background()).
func (p *Pool) Wait() error {
	p.Close()
	return p.Join(context.Background())
}
