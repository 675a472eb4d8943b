// SPDX-License-Identifier: Apache-2.0

// Parent side: starting worker processes, and replacing workers with
// backoff until the pool is back to its size.

package pool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/process"
	pb "github.com/multiproc/multiproc/proto/pool/v1"
	"github.com/multiproc/multiproc/shm"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// startWorker starts one worker process and waits for its Ready message.
func (b *procBackend) startWorker(ctx context.Context) (w *workerHandle, err error) {
	p := b.p
	prog, err := shm.New(progressSize)
	if err != nil {
		return nil, &StartError{Err: err}
	}
	defer func() {
		if err != nil {
			prog.Close()
		}
	}()
	var connOpts []ipc.Option
	if p.o.shm > 0 {
		// Large chunks and results through shared memory, over the pipes
		// (the worker and the pool reopen each other's segments through
		// /proc): a socketpair, which would carry the descriptors, costs
		// twice a pipe's round trip on every small task.
		connOpts = append(connOpts, ipc.SharedMemory(p.o.shm), ipc.SharedMemoryOverPipes())
	}
	mine, theirs, err := ipc.Pipe(true, connOpts...)
	if err != nil {
		return nil, &StartError{Err: err}
	}
	p.mu.Lock()
	p.nworker++
	name := fmt.Sprintf("PoolWorker-%d", p.nworker)
	p.mu.Unlock()
	proc := workerFunc.Process(theirs, b.cfg, prog, &handleSet{hs: p.o.initHandles})
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
	fail := func(err error) (*workerHandle, error) {
		proc.Kill()
		if werr := proc.Wait(); err == nil {
			err = werr
		}
		mine.Close()
		return nil, &StartError{Err: err}
	}
	msg, err := mine.RecvBytes(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		// The worker died before it was ready: its exit says why.
		werr := proc.Wait()
		mine.Close()
		var xe *process.ExitError
		switch {
		case errors.As(werr, &xe):
			// Killed (the OOM killer, chaos tooling) or ended: a death,
			// reported as every worker death is, with how it ended.
			werr = &WorkerDiedError{Pid: xe.Pid, Code: xe.Code, Signal: xe.Signal, BeforeReady: true, Err: werr}
		case werr == nil:
			werr = err
		}
		return nil, &StartError{Err: werr}
	}
	var m pb.FromWorker
	if err := proto.Unmarshal(msg, &m); err != nil {
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
	w = &workerHandle{p: p, pid: proc.Pid(), name: name, held: map[uint64]*chunk{}, procWorker: &procWorker{
		proc: proc, conn: mine, prog: prog, word: progressWord(prog), out: ipc.NewBatcher(mine),
		tok: readToken{wake: make(chan struct{}, 1), fd: -1, buf: make([]byte, readBuf)},
	}}
	if fd, ready, err := mine.WaitFD(); err == nil && !ready {
		w.tok.fd = int(fd)
	}
	p.log.Debug("worker started", zap.String("name", name), zap.Int("pid", w.pid))
	return w, nil
}

// addWorkerLocked puts a ready worker to work.
func (p *Pool) addWorkerLocked(w *workerHandle) {
	p.ws = append(p.ws, w)
	p.be.runLocked(w)
}

// startWorkersLocked starts replacements until the pool has its number
// of active (not retiring) workers, counting those being started.
func (p *Pool) startWorkersLocked() {
	if !p.needWorkersLocked() {
		return
	}
	active := p.starting
	for _, w := range p.ws {
		if !w.gone && w.life == lifeActive {
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
	return p.state != stateTerminated && !(p.state == stateClosing && len(p.jobs) == 0) && !p.isDone()
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
		w, err := p.be.startWorker(p.life)
		var se *StartError
		if errors.As(err, &se) {
			err = se.Err
		}
		p.mu.Lock()
		if err == nil {
			p.starting--
			if p.state == stateTerminated {
				defer p.be.discard(w)
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
		if !w.gone && w.life == lifeActive && w.kill == killNone {
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
