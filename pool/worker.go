package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
	commonpb "github.com/multiproc/multiproc/proto/common/v1"
	pb "github.com/multiproc/multiproc/proto/pool/v1"
	"google.golang.org/protobuf/proto"
)

// workerFunc is the function every worker process runs.
var workerFunc = process.Register("multiproc.pool.worker", runWorker)

// childWorker is the worker process's state. One goroutine (execute)
// reads the connection and runs the chunks, so a short task costs no
// goroutine hand-off; while a chunk runs longer than watchAfter, a
// watcher goroutine reads in its place so that a Cancel acts at once.
// Only one of them reads at any time, so frames stay in order.
type childWorker struct {
	conn    *ipc.Conn
	timeout int64

	mu        sync.Mutex
	q         []*pb.Chunk
	stopped   bool
	readErr   error
	cancelled map[uint64]bool
	curJob    uint64
	curCancel context.CancelFunc
	running   bool
	watching  bool
	wcancel   context.CancelFunc
	wdone     chan struct{}

	pending [][]byte
}

// watchAfter is how long a chunk runs before a watcher goroutine starts
// reading the connection for Cancel messages.
const watchAfter = time.Millisecond

// runWorker is a worker process: it answers Chunks until Stop, the end
// of its connection, or SIGTERM.
func runWorker(ctx context.Context, conn *ipc.Conn, cfgBytes []byte) error {
	defer conn.Close()
	var cfg pb.WorkerConfig
	if err := proto.Unmarshal(cfgBytes, &cfg); err != nil {
		return fmt.Errorf("pool: bad worker configuration: %w", err)
	}
	ready := &pb.Ready{Pid: int64(os.Getpid())}
	if cfg.Initializer != "" {
		t := lookupTask(cfg.Initializer)
		if t == nil {
			ready.InitError = &commonpb.RemoteError{Type: "pool", Message: fmt.Sprintf("%v: %q", ErrNotRegistered, cfg.Initializer)}
		} else if _, errs := t.runEncoded(ctx, cfg.InitializerInput, 1, nil); len(errs) > 0 {
			ready.InitError = errs[0].Error
		}
	}
	b, _ := proto.Marshal(&pb.FromWorker{Msg: &pb.FromWorker_Ready{Ready: ready}})
	if err := conn.SendBytes(ctx, b); err != nil {
		return err
	}
	if ready.InitError != nil {
		return errors.New("pool: initializer failed: " + ready.InitError.Message)
	}
	w := &childWorker{conn: conn, timeout: cfg.TaskTimeoutNs, cancelled: map[uint64]bool{}}
	return w.execute(ctx)
}

// handle acts on one message from the pool. Called with mu held.
func (w *childWorker) handle(b []byte) {
	var m pb.ToWorker
	if err := proto.Unmarshal(b, &m); err != nil {
		w.stopped, w.readErr = true, err
		return
	}
	switch x := m.Msg.(type) {
	case *pb.ToWorker_Chunk:
		w.q = append(w.q, x.Chunk)
	case *pb.ToWorker_Cancel:
		j := x.Cancel.Job
		if w.curJob == j && w.curCancel != nil {
			w.curCancel()
		}
		// Chunks of j still queued are answered as cancelled. Every chunk
		// of j came before the Cancel, so j can be forgotten once the
		// queue holds no chunk of it.
		w.cancelled[j] = true
	case *pb.ToWorker_Stop:
		w.stopped = true
	}
}

func (w *childWorker) send() error {
	if len(w.pending) == 0 {
		return nil
	}
	err := w.conn.SendFrames(context.Background(), w.pending...)
	clear(w.pending)
	w.pending = w.pending[:0]
	return err
}

func (w *childWorker) execute(ctx context.Context) error {
	for {
		w.mu.Lock()
		var c *pb.Chunk
		if len(w.q) > 0 {
			c = w.q[0]
			w.q[0] = nil
			w.q = w.q[1:]
		}
		stopped, rerr := w.stopped, w.readErr
		if c == nil {
			clear(w.cancelled)
		}
		w.mu.Unlock()
		if c == nil {
			if err := w.send(); err != nil {
				return err
			}
			if stopped {
				return rerr
			}
			b, err := w.conn.RecvBytes(ctx)
			if err != nil {
				if errors.Is(err, io.EOF) || ctx.Err() != nil {
					// The pool is gone or terminating us.
					return ctx.Err()
				}
				return err
			}
			w.mu.Lock()
			w.handle(b)
			w.mu.Unlock()
			continue
		}
		w.run(ctx, c)
		if len(w.pending) >= resultBatch {
			if err := w.send(); err != nil {
				return err
			}
		}
	}
}

// watch reads the connection while a long chunk runs.
func (w *childWorker) watch(ctx context.Context, done chan struct{}) {
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
		w.handle(b)
		w.mu.Unlock()
	}
}

func (w *childWorker) run(ctx context.Context, c *pb.Chunk) {
	res := &pb.Result{Seq: c.Seq}
	t := lookupTask(c.Task)
	w.mu.Lock()
	skip := w.cancelled[c.Job]
	var cctx context.Context
	var cancel context.CancelFunc
	if !skip {
		cctx, cancel = context.WithCancel(ctx)
		w.curJob, w.curCancel = c.Job, cancel
		w.running = true
	}
	w.mu.Unlock()
	var timer *time.Timer
	if !skip {
		timer = time.AfterFunc(watchAfter, func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if !w.running || w.watching {
				return
			}
			wctx, wcancel := context.WithCancel(ctx)
			w.watching, w.wcancel, w.wdone = true, wcancel, make(chan struct{})
			go w.watch(wctx, w.wdone)
		})
	}
	switch {
	case skip:
		res.Cancelled = true
	case t == nil:
		re := &commonpb.RemoteError{Type: "pool", Message: fmt.Sprintf("%v: %q", ErrNotRegistered, c.Task)}
		for i := range c.Count {
			res.Errors = append(res.Errors, &pb.TaskError{Index: i, Error: re})
		}
	default:
		var h *runHooks
		if w.timeout > 0 {
			h = &runHooks{timeout: time.Duration(w.timeout), onStart: func(i int) {
				f, _ := proto.Marshal(&pb.FromWorker{Msg: &pb.FromWorker_Started{Started: &pb.Started{Seq: c.Seq, Index: uint32(i)}}})
				w.pending = append(w.pending, f)
				w.send()
			}}
		}
		res.Outputs, res.Errors = t.runEncoded(cctx, c.Inputs, int(c.Count), h)
	}
	if !skip {
		timer.Stop()
		w.mu.Lock()
		w.running = false
		watching, wcancel, wdone := w.watching, w.wcancel, w.wdone
		w.watching = false
		res.Cancelled = w.cancelled[c.Job]
		w.curJob, w.curCancel = 0, nil
		w.mu.Unlock()
		if watching {
			wcancel()
			<-wdone
		}
		cancel()
	}
	f, err := proto.Marshal(&pb.FromWorker{Msg: &pb.FromWorker_Result{Result: res}})
	if err != nil {
		f, _ = proto.Marshal(&pb.FromWorker{Msg: &pb.FromWorker_Result{Result: &pb.Result{Seq: c.Seq, Cancelled: true}}})
	}
	w.pending = append(w.pending, f)
}

// threadLoop is a ThreadPool worker goroutine.
func (w *worker) threadLoop() {
	p := w.p
	defer p.wg.Done()
	var h *runHooks
	if p.o.taskTimeout > 0 {
		h = &runHooks{timeout: p.o.taskTimeout}
	}
	for c := range w.tq {
		var out any
		var errs []idxErr
		out, errs = c.job.task.runLocal(c.job.ctx, c.in, h)
		for i := range errs {
			if re, ok := errs[i].err.(*RemoteError); ok {
				re.Index = c.start + errs[i].idx
			}
		}
		p.mu.Lock()
		delete(w.held, c.seq)
		w.heldTasks -= c.n
		ended := c.job.ended
		p.dispatchLocked() // a ThreadPool has no frames to flush
		p.mu.Unlock()
		if !ended {
			c.job.sink.deliver(c, out, errs, nil)
		}
	}
	p.mu.Lock()
	w.gone, w.dead = true, true
	p.ws = slices.DeleteFunc(p.ws, func(x *worker) bool { return x == w })
	p.maybeDoneLocked()
	p.mu.Unlock()
}

// rssOf returns the resident set size of process pid.
func rssOf(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("pool: bad statm %q", b)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

func signalOf(code int) syscall.Signal { return syscall.Signal(-code) }
