// SPDX-License-Identifier: Apache-2.0

// Parent side: what becomes of the tasks a dead worker held (who is
// charged, what runs again), using its progress word (progress.go).

package pool

import (
	"cmp"
	"slices"
	"time"

	"go.uber.org/zap"
)

// workerGone settles the tasks a dead worker held and replaces it.
func (p *Pool) workerGone(w *workerHandle, code int, exitErr error) {
	lp := readProgress(w.word)
	w.prog.Close()
	p.mu.Lock()
	w.gone = true
	for _, t := range []*time.Timer{w.deadline.timer, w.killTimer, w.ageTimer} {
		if t != nil {
			t.Stop()
		}
	}
	p.ws = slices.DeleteFunc(p.ws, func(x *workerHandle) bool { return x == w })
	held := make([]*chunk, 0, len(w.held))
	for _, c := range w.held {
		held = append(held, c)
	}
	// Requeue in the order the worker got them.
	slices.SortFunc(held, func(a, b *chunk) int { return cmp.Compare(a.order, b.order) })
	w.held = nil
	unexpected := w.kill == killNone && w.life != lifeStopping
	if unexpected && len(held) > 0 {
		p.log.Warn("worker died holding tasks", zap.Int("pid", w.pid), zap.Int("exitcode", code), zap.Error(exitErr))
	} else {
		p.log.Debug("worker exited", zap.Int("pid", w.pid), zap.Int("exitcode", code))
	}
	// The progress word says what the worker was doing: running a task of
	// a chunk it held (that task alone is charged), between two tasks of
	// one or finishing one (nothing is charged), decoding or encoding one
	// (that chunk is charged), or none of these (attributed false: it was
	// idle, or receiving).
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
		case w.kill == killTimeout && c.seq == w.deadline.seq:
			d.splitAround(c, w.deadline.idx, &TimeoutError{Pid: w.pid, Timeout: p.o.taskTimeout.String()})
		case w.kill != killNone || !unexpected:
			// Not this chunk's fault: run it again.
			d.requeueRest(c)
		case lp.on(c) && running && i >= c.done:
			// The task that was running: it alone is charged.
			d.splitAround(c, i, nil)
		case lp.on(c) && lp.state == markChunk:
			// Decoding or encoding this chunk, outside its tasks.
			d.blindDeath(c, len(held))
		case attributed || !lp.notReached(c):
			// Done, or not started while the worker was busy with another:
			// run again, uncharged.
			d.requeueRest(c)
		default:
			// The worker died outside any task before it reached this
			// chunk (starting, or receiving it).
			d.unreachedDeath(c, len(held))
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

// maxBlindDeaths is how many deaths of its workers outside its tasks (see
// blindDeath) a chunk is charged at, the last one alone on its worker: a
// chunk that kills every worker it reaches before its tasks run does not
// run forever, and a worker killed by chance then charges nothing.
const maxBlindDeaths = 3

// blindDeath settles c, held by a worker that died outside its tasks while
// it received, decoded or encoded c (or held nheld chunks in all): c runs
// again alone, uncharged, so that further deaths tell whether it is to
// blame. A chunk that kills its worker outside its tasks is charged at
// its maxBlindDeaths-th such death, alone on the worker.
func (d *deathSettler) blindDeath(c *chunk, nheld int) {
	c.blind++
	if c.suspect && nheld == 1 && c.blind >= maxBlindDeaths {
		d.charge(c)
		return
	}
	c.suspect = true
	d.requeueRest(c)
}

// maxUnreachedDeaths is how many deaths of workers that held a chunk but
// had not reached it (their progress word names no task and no chunk: the
// worker was starting, or receiving the chunk's frame) a chunk is charged
// at. Such a death is almost never the chunk's doing: a replacement killed
// while it starts (an OOM killer, chaos tooling killing at random) holds
// the chunks it was sent. Counting them as blindDeath does made three
// unlucky kills fail a whole default-sized chunk (1,250 tasks of a 10k
// Map on 2 workers); the bound stays, so a chunk whose frame kills every
// receiver (one too large to hold, say) still ends.
const maxUnreachedDeaths = 10

// unreachedDeath settles c, held by a worker that died before it reached
// c: c runs again, uncharged, and is charged alone on its worker at its
// maxUnreachedDeaths-th such death.
func (d *deathSettler) unreachedDeath(c *chunk, nheld int) {
	c.unreached++
	if c.suspect && nheld == 1 && c.unreached >= maxUnreachedDeaths {
		d.charge(c)
		return
	}
	if c.unreached >= maxBlindDeaths {
		c.suspect = true // run it alone from now on, so a death tells
	}
	d.requeueRest(c)
}

// deathSettler collects what becomes of the chunks a dead worker held.
type deathSettler struct {
	p       *Pool
	w       *workerHandle
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
	sc.suspect, sc.blind, sc.unreached = c.suspect, c.blind, c.unreached
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
