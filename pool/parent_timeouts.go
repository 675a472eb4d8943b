// SPDX-License-Identifier: Apache-2.0

// Parent side: stopping a worker (SIGTERM, SIGKILL after the kill grace)
// and the per-task timeout that does it.

package pool

import (
	"time"

	pb "github.com/multiproc/multiproc/proto/pool/v1"
	"go.uber.org/zap"
)

type killReason int

const (
	killNone killReason = iota
	killTimeout
	killCancel
	killTerminate
)

// terminate sends SIGTERM, then SIGKILL after the kill grace. Called with
// Pool.mu held.
func (w *workerHandle) terminate() {
	w.proc.Terminate()
	if w.killTimer == nil {
		proc := w.proc
		w.killTimer = time.AfterFunc(w.p.o.killGrace, func() { proc.Kill() })
	}
}

func (w *workerHandle) onStarted(s *pb.Started) {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.held[s.Seq] == nil || p.o.taskTimeout <= 0 {
		return
	}
	w.deadline.gen++
	gen, seq, idx := w.deadline.gen, s.Seq, int(s.Index)
	if w.deadline.timer != nil {
		w.deadline.timer.Stop()
	}
	// A little slack lets a task that honours its context's deadline
	// return on its own first.
	w.deadline.timer = time.AfterFunc(p.o.taskTimeout+p.o.timeoutSlack, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if w.deadline.gen != gen || w.gone || w.kill != killNone || w.held[seq] == nil {
			return
		}
		p.log.Info("task timed out; terminating its worker", zap.Int("pid", w.pid), zap.Duration("timeout", p.o.taskTimeout))
		w.kill = killTimeout
		w.deadline.seq, w.deadline.idx = seq, idx
		w.terminate()
	})
}

// taskDeadline watches the running task's deadline (TaskTimeout), under
// Pool.mu.
type taskDeadline struct {
	gen   uint64      // counts the task starts and results, so a stale timer does nothing
	timer *time.Timer // fires timeoutSlack after the running task's deadline
	// seq and idx name the task that timed out (its chunk and index).
	seq uint64
	idx int
}

const timeoutSlack = 100 * time.Millisecond
