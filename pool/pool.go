// SPDX-License-Identifier: Apache-2.0

// The Pool type and its lifecycle: New, Close, Terminate, Join
// (NewThreadPool is in thread_pool.go). Where the rest lives, by the side
// of the pipe it runs on:
//
//   - the parent (the pool's process), files parent_*: parent_dispatch.go
//     (calls, chunks, the queue, handing chunks out), parent_worker.go (the
//     pool's handle on a worker: writing to it, receiving its answers),
//     parent_handoff.go (the read token: who receives from a worker),
//     parent_start.go (starting and replacing workers), parent_deaths.go
//     (what a dead worker's tasks become), parent_timeouts.go (task
//     timeouts, SIGTERM then SIGKILL);
//   - the worker process: worker_process.go;
//   - both: wire.go (the messages), progress.go (the progress word),
//     task.go (running a chunk's tasks); spinning follows
//     internal/base/spin, encoding internal/base/valenc;
//   - what the workers are: backend.go, the seam between the Pool and
//     its workers; parent_backend.go for worker processes (New),
//     thread_pool.go for goroutines (NewThreadPool);
//   - the calls users make: api.go, runner.go.

package pool

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/internal/base/spin"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
	pb "github.com/multiproc/multiproc/proto/pool/v1"
)

var selfPid = os.Getpid()

func contextBackground() context.Context { return context.Background() }

// Pool runs registered tasks on worker processes (New) or goroutines
// (NewThreadPool). All methods, and the Task methods that take a Pool,
// are safe for concurrent use by any number of goroutines.
type Pool struct {
	o   options
	log *zap.Logger
	be  backend // what the workers are: processes or goroutines

	mu       sync.Mutex
	state    int
	ws       []*workerHandle
	starting int
	queue    []*chunk
	qbase    []*chunk // queue's memory, reused once it is empty (entries are cleared as they leave)
	jobs     map[uint64]*job
	jobSeq   uint64
	nworker  int
	done     chan struct{}
	doneOnce sync.Once
	wg       sync.WaitGroup
	// spin is the spin of the Future waits and direct reads (a Bounded
	// spin: a miss turns it off for the next waits).
	spin spin.Bounded
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

// New starts a pool of worker processes and waits until each is ready
// (its initializer, if any, has run). ctx bounds the start only. If a
// worker cannot be started, the ones already started are stopped and New
// returns a *StartError (or an option's validation error).
//
// Every program that uses a Pool must call process.Init() first thing in
// main (and TestMain): workers are re-executions of the binary.
func New(ctx context.Context, opts ...Option) (*Pool, error) {
	p, err := newPool(opts)
	if err != nil {
		return nil, err
	}
	cfg := &pb.WorkerConfig{TaskTimeoutNs: int64(p.o.taskTimeout)}
	if p.o.initTask != nil {
		cfg.Initializer, cfg.InitializerInput = p.o.initTask.name, p.o.initInput
	}
	b := &procBackend{p: p}
	if b.cfg, err = proto.Marshal(cfg); err != nil {
		return nil, err
	}
	p.be = b
	ws := make([]*workerHandle, p.o.workers)
	errs := make([]error, p.o.workers)
	var wg sync.WaitGroup
	for i := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws[i], errs[i] = b.startWorker(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, w := range ws {
			if w != nil {
				b.discard(w)
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

// newPool makes a Pool of the options, without workers and without its
// backend, which the constructor sets.
func newPool(opts []Option) (*Pool, error) {
	o := options{
		starter:   process.DefaultStarter(),
		log:       zap.NewNop(),
		killGrace: time.Second,
		shm:       ipc.DefaultSharedMemoryThreshold, // SharedMemory

		timeoutSlack: timeoutSlack,
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
	p := &Pool{o: o, log: o.log.Named("pool"), jobs: map[uint64]*job{}, done: make(chan struct{})}
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

func (p *Pool) isDone() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
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
		if j.args != nil {
			// As endJobWith does: a job ended here is never ended there,
			// even when its caller already has its results (Map returns
			// before its sink ends the job).
			j.args.close()
		}
		jobs = append(jobs, j)
	}
	clear(p.jobs)
	p.setQueueLocked(nil)
	for _, w := range p.ws {
		w.kill = killTerminate
		p.be.terminateLocked(w)
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
