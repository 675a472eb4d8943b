// SPDX-License-Identifier: Apache-2.0

// Worker side: the code that runs in a worker process (runWorker): it
// receives chunks, runs their tasks and writes their results.

package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/internal/base/spin"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/process"
	commonpb "github.com/multiproc/multiproc/proto/common/v1"
	pb "github.com/multiproc/multiproc/proto/pool/v1"
	"github.com/multiproc/multiproc/shm"
)

// workerFunc is the function every worker process runs.
var workerFunc = process.Register("multiproc.pool.worker", runWorker)

// workerProcess is the state of a worker process, in that process. One goroutine (execute)
// reads the connection and runs the chunks, so a short task costs no
// goroutine hand-off; while a chunk runs longer than watchAfter, a
// watcher goroutine reads in its place so that a Cancel acts at once.
// Only one of them reads at any time, so frames stay in order.
type workerProcess struct {
	conn    *ipc.Conn
	timeout int64

	mu        sync.Mutex
	q         []chunkMsg
	stopped   bool
	readErr   error
	cancelled map[uint64]bool
	curJob    uint64
	curCancel context.CancelFunc
	running   bool
	watching  bool
	wcancel   context.CancelFunc
	wdone     chan struct{}
	watchT    *time.Timer
	// jobCtx is the context of the tasks of job curJob, kept from chunk
	// to chunk of the same job; Cancel cancels it.
	jobCtx context.Context
	// received numbers the chunks received (chunkMsg.order), under mu.
	received uint32

	// mark is the progress word (see progress.go); hooks, made once, are
	// the running chunk's runHooks, curSeq its seq. While a chunk runs
	// longer than watchAfter, flushWanted is set every partialEvery
	// (partialT) and the next task to finish sends the results so far
	// (sendPartial).
	mark        *uint64
	hooks       runHooks
	curSeq      uint64
	flushWanted atomic.Bool
	partialT    *time.Timer

	sendMu  sync.Mutex // guards pending, lazy, arena and writes
	pending [][]byte
	// lazy are the large result frames among pending, encoded when they
	// are written (straight into shared memory).
	lazy []ipc.LazyFrame
	// arena holds the small frames of pending (copied in by queueResult),
	// reused once they are written: no allocation per result.
	arena []byte

	// Used by the execute goroutine only:
	rbuf    []byte       // receive buffer; a message's chunk is run before the next receive
	release func()       // releases the shared memory of the last message received, if any
	rfd     int          // conn's descriptor, for spinRecv; -1 if unknown
	spin    spin.Bounded // before a receive (see spinRecv)
	obuf    []byte       // a chunk's encoded results
	fbuf    []byte       // a result frame
	over    int64        // the connection's shared-memory threshold (0: none)
	sio     sharedIO     // the running chunk's (reused: no allocation per chunk)
	// handBack is sio.handBack: it hands the running chunk's frame back
	// to the pool (lend.go). Made once.
	handBack func() (uint64, bool)
}

const (
	// maxArenaFrame is the largest result frame copied into the arena;
	// larger ones are written from their own memory.
	maxArenaFrame = 16 << 10
	// maxRecvBuf is the largest receive buffer the worker keeps: a
	// stream of large chunks (big data) then reuses one buffer instead of
	// faulting in fresh memory for each (about as slow as the copy).
	maxRecvBuf = 64 << 20
)

// watchAfter is how long a chunk runs before a watcher goroutine starts
// reading the connection for Cancel messages, and before the results of
// its finished tasks go out in a partial result; partialEvery is how
// often they go out after that.
const (
	watchAfter   = time.Millisecond
	partialEvery = 10 * time.Millisecond
)

// runWorker is a worker process: it answers Chunks until Stop, the end
// of its connection, or SIGTERM.
func runWorker(ctx context.Context, conn *ipc.Conn, cfgBytes []byte, prog *shm.Segment, hs *handleSet) error {
	if dir := os.Getenv(workerProfileEnv); dir != "" {
		defer profileWorker(dir)()
	}
	defer conn.Close()
	defer prog.Close()
	defer hs.close() // the files of handles no initializer attached
	cfg, err := parseConfig(cfgBytes)
	if err != nil {
		return fmt.Errorf("pool: bad worker configuration: %w", err)
	}
	var initErr *commonpb.RemoteError
	if cfg.initializer != "" {
		t := lookupTask(cfg.initializer)
		if t == nil {
			initErr = remote.Errorf("%w: %q", ErrNotRegistered, cfg.initializer)
		} else if t.runInit != nil {
			// The argument carries handles: the initializer's task takes
			// them (it attaches each), the set keeps none.
			got := hs.got
			hs.got = nil
			initErr = t.runInit(ctx, cfg.initInput, got)
		} else if _, errs := t.runEncoded(ctx, cfg.initInput, 1, nil, nil, nil); len(errs) > 0 {
			initErr = errs[0].Error
		}
	}
	var b []byte
	if initErr != nil {
		b, _ = proto.Marshal(&pb.FromWorker{Msg: &pb.FromWorker_Ready{Ready: &pb.Ready{Pid: int64(os.Getpid()), InitError: initErr}}})
	} else {
		b = appendReady(nil, os.Getpid())
	}
	if err := conn.SendBytes(ctx, b); err != nil {
		return err
	}
	if initErr != nil {
		return errors.New("pool: initializer failed: " + initErr.Message)
	}
	w := &workerProcess{conn: conn, timeout: cfg.timeout, cancelled: map[uint64]bool{}, rfd: -1, mark: progressWord(prog),
		over: conn.SharedMemoryThreshold()}
	if fd, ready, err := conn.WaitFD(); err == nil && !ready {
		w.rfd = int(fd)
	}
	w.hooks = runHooks{mark: w.mark, flush: &w.flushWanted, partial: w.sendPartial}
	if w.timeout > 0 {
		w.hooks.timeout = time.Duration(w.timeout)
		w.hooks.onStart = func(i int) {
			f, _ := proto.Marshal(&pb.FromWorker{Msg: &pb.FromWorker_Started{Started: &pb.Started{Seq: w.curSeq, Index: uint32(i)}}})
			w.queueFrame(f)
			w.send()
		}
	}
	return w.execute(ctx)
}

// handle acts on one message from the pool; shared says that b is in a
// shared-memory segment, valid until the results of the chunk it brings
// have been sent (see recv). Called with mu held.
func (w *workerProcess) handle(b []byte, shared bool) {
	if m, ok := parseControl(b); ok {
		w.control(m)
		return
	}
	c, isChunk, m, err := parseToWorker(b)
	if err != nil {
		w.stopped, w.readErr = true, err
		return
	}
	if isChunk {
		w.received++
		c.order = w.received
		c.shared = shared
		if shared {
			c.frame = b
		}
		w.q = append(w.q, c)
		return
	}
	switch x := m.Msg.(type) {
	case *pb.ToWorker_Cancel:
		w.control(toWorkerMsg{cancel: true, job: x.Cancel.Job})
	case *pb.ToWorker_Stop:
		w.control(toWorkerMsg{stop: true})
	}
}

// control acts on a Cancel or Stop. Called with mu held.
func (w *workerProcess) control(m toWorkerMsg) {
	switch {
	case m.stop:
		w.stopped = true
	case m.cancel:
		if w.curJob == m.job && w.curCancel != nil {
			w.curCancel()
		}
		// Chunks of the job still queued are answered as cancelled. Every
		// chunk of it came before the Cancel, so it is forgotten once the
		// queue is empty.
		w.cancelled[m.job] = true
	}
}

// queueFrame adds a frame to the batch of results to write; it is
// written from f's memory.
func (w *workerProcess) queueFrame(f []byte) int {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	w.pending = append(w.pending, f)
	return len(w.pending) + len(w.lazy)
}

// queueResult is queueFrame for the execute goroutine's result frame f
// (in fbuf): a small one is copied into the arena, a large one is given
// away (fbuf is then dropped).
func (w *workerProcess) queueResult(f []byte) int {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	if len(f) > maxArenaFrame {
		w.fbuf = nil
		w.pending = append(w.pending, f)
		return len(w.pending) + len(w.lazy)
	}
	// Frames already queued keep pointing at the old arena if this
	// append moves it.
	at := len(w.arena)
	w.arena = append(w.arena, f...)
	w.pending = append(w.pending, w.arena[at:len(w.arena):len(w.arena)])
	return len(w.pending) + len(w.lazy)
}

// queueLazy queues a large result frame of size bytes that fill writes
// when it is sent (straight into shared memory).
func (w *workerProcess) queueLazy(size int, fill func([]byte) error) int {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	w.lazy = append(w.lazy, ipc.LazyFrame{Before: len(w.pending), Size: size, Fill: fill})
	return len(w.pending) + len(w.lazy)
}

// send writes the frames queued so far, together.
func (w *workerProcess) send() error {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	if len(w.pending) == 0 && len(w.lazy) == 0 {
		return nil
	}
	var err error
	if len(w.lazy) == 0 {
		err = w.conn.SendFrames(context.Background(), w.pending...)
	} else {
		err = w.conn.SendFramesLazy(context.Background(), w.pending, w.lazy)
		clear(w.lazy)
		w.lazy = w.lazy[:0]
	}
	clear(w.pending)
	w.pending = w.pending[:0]
	w.arena = w.arena[:0]
	return err
}

// workerSpin bounds how long a worker that has answered everything
// polls its connection for the next request before it sleeps in a
// receive (internal/base/spin's policy: a Bounded spin).
const workerSpin = 50 * time.Microsecond

// spinRecv waits up to workerSpin for the next request, so that a caller
// that sends its next task within that time (a loop of Apply or Submit
// and Get) finds the worker awake: no sleep and wake-up (10-20 µs on a
// virtual machine) per task. The worker runs with GOMAXPROCS=1, but its
// peer is the parent process, so it spins whenever more than one CPU is
// usable (spin.Bounded.SpinReadable); not with a single CPU (the caller
// must run), nor for the next spin.SkipAfterMiss receives after a spin
// that ran out, so an idle worker burns at most workerSpin per that many
// requests.
func (w *workerProcess) spinRecv() {
	if fd := w.rfd; fd >= 0 && !w.conn.Buffered() {
		w.spin.SpinReadable(fd, workerSpin)
	}
}

// recv receives the next message into rbuf. It is only called when every
// chunk received before has run (the queue is empty), so the chunk it
// brings may alias rbuf.
//
// A large message (shared memory) is read in place in its segment's
// mapping, which the chunks it brings alias, and so do their tasks' byte
// slices and results (sharedIO): the segment is released at the next
// recv, when they have all run and their results have been sent.
func (w *workerProcess) recv() ([]byte, error) {
	if w.rbuf == nil {
		w.rbuf = make([]byte, 4<<10)
	}
	if w.release != nil {
		err := w.send()
		w.release()
		w.release = nil
		if err != nil {
			return nil, err
		}
	}
	b, release, err := w.conn.RecvShared(context.Background(), w.rbuf)
	if err != nil {
		return nil, err
	}
	w.release = release
	if release == nil && len(b) > len(w.rbuf) && len(b) <= maxRecvBuf {
		// Next time it is the buffer (this message is done by then).
		w.rbuf = b[:cap(b)]
	}
	return b, nil
}

func (w *workerProcess) execute(ctx context.Context) error {
	// The root context ends at SIGTERM: closing the connection then ends
	// a receive in progress (one AfterFunc for the worker's life rather
	// than one per receive).
	stop := context.AfterFunc(ctx, func() { w.conn.Close() })
	defer stop()
	// fail turns an error of the connection into the worker's result.
	fail := func(err error) error {
		if errors.Is(err, io.EOF) || ctx.Err() != nil {
			// The pool is gone or terminating us.
			return ctx.Err()
		}
		return err
	}
	ran := 0 // chunks run since the results were last written
	for {
		w.mu.Lock()
		var c chunkMsg
		have := len(w.q) > 0
		if have {
			c = w.q[0]
			w.q[0] = chunkMsg{}
			w.q = w.q[1:]
		}
		stopped, rerr := w.stopped, w.readErr
		if !have {
			clear(w.cancelled)
		}
		w.mu.Unlock()
		if have {
			ran++
			if w.run(ctx, &c) >= resultBatch {
				if err := w.send(); err != nil {
					return fail(err)
				}
				ran = 0
			}
			continue
		}
		// After a lone chunk (a request answered at once) the results go
		// out now; after several (a stream), more work that is buffered
		// or already in the pipe is taken first, so that the results go
		// out together.
		if stopped || (ran <= 1 && !w.conn.Buffered()) || !w.conn.Ready() {
			if err := w.send(); err != nil {
				return fail(err)
			}
			ran = 0
			if stopped {
				return rerr
			}
		}
		w.spinRecv()
		b, err := w.recv()
		if err != nil {
			return fail(err)
		}
		w.mu.Lock()
		w.handle(b, w.release != nil)
		w.mu.Unlock()
	}
}

// watch reads the connection while a long chunk runs.
func (w *workerProcess) watch(ctx context.Context, done chan struct{}) {
	defer close(done)
	for {
		b, err := w.conn.RecvBytes(ctx)
		w.mu.Lock()
		if err != nil {
			if ctx.Err() == nil {
				// The pool is gone: stop the running task too.
				w.stopped = true
				if w.curCancel != nil {
					w.curCancel()
				}
			}
			w.mu.Unlock()
			return
		}
		w.handle(b, false) // RecvBytes: b is its own
		w.mu.Unlock()
	}
}

// startWatch starts the watcher if the chunk is still running.
func (w *workerProcess) startWatch(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.running || w.watching {
		return
	}
	wctx, wcancel := context.WithCancel(ctx)
	w.watching, w.wcancel, w.wdone = true, wcancel, make(chan struct{})
	go w.watch(wctx, w.wdone)
	// The results of the chunks before this long one go out now, not
	// when it ends (progress, and fewer tasks lost if the worker dies),
	// and so do its own as its tasks finish.
	go w.send()
	w.flushWanted.Store(true)
}

// sendPartial sends the results of tasks [from, to) of the running chunk
// (see runHooks.partial) and asks for the next ones partialEvery later.
// Called by the execute goroutine.
func (w *workerProcess) sendPartial(from, to int, out []byte, errs []*pb.TaskError) bool {
	f, err := appendResult(nil, w.curSeq, uint32(from), uint32(to-from), out, errs, false)
	if err != nil {
		return false
	}
	w.queueFrame(f)
	if w.send() != nil {
		// The pool is gone: the final result will not go out either.
		return false
	}
	if w.partialT == nil {
		w.partialT = time.AfterFunc(partialEvery, func() { w.flushWanted.Store(true) })
	} else {
		w.partialT.Reset(partialEvery)
	}
	return true
}

func (w *workerProcess) run(ctx context.Context, c *chunkMsg) int {
	if ctx.Err() != nil {
		// The pool is stopping this worker (SIGTERM cancelled the root
		// context): start nothing more. The pool runs again elsewhere the
		// chunks it does not get back.
		return 0
	}
	var outputs []byte
	var errs []*pb.TaskError
	var lazy *lazyOut
	// Results lent from the chunk's frame, whose segment was handed back
	// (lend.go): every final result of the chunk must name it, for the
	// pool to free it.
	var lentSeg uint64
	var lentSpans []uint64
	first := 0 // the first task whose results go in the final result
	t := lookupTask(c.task)
	w.mu.Lock()
	skip := w.cancelled[c.job]
	if !skip {
		// A job's tasks get a context that a Cancel of the job ends. The
		// last job's is reused while no Cancel ended it: a task's context
		// is only promised to end when its call is cancelled, not to stay
		// untouched after the task returned.
		if w.jobCtx == nil || w.jobCtx.Err() != nil {
			if w.curCancel != nil {
				w.curCancel()
			}
			w.jobCtx, w.curCancel = context.WithCancel(ctx)
		}
		w.curJob = c.job
		w.running = true
	}
	cctx := w.jobCtx
	w.mu.Unlock()
	if !skip {
		if w.watchT == nil {
			w.watchT = time.AfterFunc(watchAfter, func() { w.startWatch(ctx) })
		} else {
			w.watchT.Reset(watchAfter)
		}
	}
	switch {
	case skip:
	case t == nil:
		re := remote.Errorf("%w: %q", ErrNotRegistered, c.task)
		for i := range c.count {
			errs = append(errs, &pb.TaskError{Index: i, Error: re})
		}
	default:
		h := &w.hooks
		if w.mark == nil && w.timeout <= 0 {
			h = nil
		} else {
			h.base, h.first = uint64(c.order)<<32, 0
			w.curSeq = c.seq
		}
		if w.mark != nil {
			*w.mark = uint64(c.order)<<32 | markChunk
		}
		if w.handBack == nil {
			w.handBack = func() (uint64, bool) {
				token, err := w.conn.HandBack(w.sio.frame)
				return token, err == nil
			}
		}
		w.sio = sharedIO{lend: c.shared, over: w.over, frame: c.frame, handBack: w.handBack}
		outputs, errs = t.runEncoded(cctx, c.inputs, int(c.count), h, w.obuf[:0], &w.sio)
		lazy, w.sio.lazy = w.sio.lazy, nil
		lentSeg, lentSpans = w.sio.lentSeg, w.sio.lentSpans
		w.sio.frame, w.sio.lentSpans = nil, nil
		if w.mark != nil {
			*w.mark = uint64(c.order)<<32 | markFinishing
		}
		if h != nil {
			first = h.first
		}
		if cap(outputs) <= maxArenaFrame {
			w.obuf = outputs[:0]
		}
	}
	cancelled := skip
	if !skip {
		w.watchT.Stop()
		if w.partialT != nil {
			w.partialT.Stop()
		}
		w.flushWanted.Store(false)
		w.mu.Lock()
		w.running = false
		watching, wcancel, wdone := w.watching, w.wcancel, w.wdone
		w.watching = false
		cancelled = w.cancelled[c.job]
		w.mu.Unlock()
		if watching {
			wcancel()
			<-wdone
		}
	}
	if ctx.Err() != nil && !cancelled {
		// The root context ended while the chunk ran, so its tasks may
		// have failed only because the pool is stopping this worker (for
		// another job's sake): report nothing; the pool runs it again.
		return 0
	}
	if lazy != nil {
		if n, ok := w.queueLazyResult(c.seq, uint32(first), lazy, errs, cancelled, lentSeg, lentSpans); ok {
			if w.mark != nil {
				*w.mark = uint64(c.order) << 32 // done with it
			}
			return n
		}
		outputs = lazy.appendTo(nil)
	}
	f, err := appendFinalResult(w.fbuf[:0], c.seq, uint32(first), 0, outputs, errs, cancelled, lentSeg, lentSpans)
	if err != nil {
		f, _ = appendFinalResult(w.fbuf[:0], c.seq, uint32(first), 0, nil, nil, true, lentSeg, lentSpans)
	}
	w.fbuf = f[:0]
	n := w.queueResult(f)
	if w.mark != nil {
		*w.mark = uint64(c.order) << 32 // done with it
	}
	return n
}

// queueLazyResult queues a result frame whose outputs (lazy) are encoded
// when it is sent, straight into shared memory; false if its errors
// cannot be encoded (the caller then encodes it as usual).
func (w *workerProcess) queueLazyResult(seq uint64, first uint32, lazy *lazyOut, errs []*pb.TaskError, cancelled bool, lentSeg uint64, lentSpans []uint64) (int, bool) {
	r, err := newResultFrame(seq, first, 0, lazy.size, errs, cancelled)
	if err != nil {
		return 0, false
	}
	r.lend(lentSeg, lentSpans)
	size := r.size()
	return w.queueLazy(size, func(dst []byte) error {
		if f := r.appendTo(dst[:0], lazy.appendTo); len(f) != size || &f[0] != &dst[0] {
			return fmt.Errorf("pool: a result frame of %d bytes, %d expected", len(f), size)
		}
		return nil
	}), true
}

// workerProfileEnv names a directory: when set (in the parent's
// environment, or with Env), every worker writes a CPU profile of its
// life there, worker-PID.pprof, when it stops (not when it is killed).
// For profiling what workers do with big data (docs/performance.md).
const workerProfileEnv = "MULTIPROC_POOL_WORKER_CPUPROFILE"

func profileWorker(dir string) func() {
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("worker-%d.pprof", os.Getpid())))
	if err != nil {
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
