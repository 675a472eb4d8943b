// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"sync"

	"github.com/multiproc/multiproc/ipc"
)

// batchWriter sends frames on a Conn, coalescing the frames of concurrent
// senders into one write: whoever finds the writer idle writes its frame
// and every frame queued meanwhile, without a goroutine hand-off.
type batchWriter struct {
	conn  *ipc.Conn
	mu    sync.Mutex
	q     [][]byte
	spare [][]byte
	busy  bool
	err   error

	queued, written uint64     // frames queued and written so far
	wrote           *sync.Cond // on mu, made by sendWait: written moved
}

// enqueue queues a frame without writing it (flush writes).
func (w *batchWriter) enqueue(frames ...[]byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.q = append(w.q, frames...)
	w.queued += uint64(len(frames))
	return nil
}

// send queues frames and writes them (with any queued before) unless
// another sender is writing, who then writes them too.
func (w *batchWriter) send(frames ...[]byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.q = append(w.q, frames...)
	w.queued += uint64(len(frames))
	return w.flushLocked()
}

// sendWait is send that returns only once frame is written (or the
// writer failed), even when another sender writes it: a server call
// keeps its place in the connection's budget until its answer has left,
// so answers a client does not read cannot pile up in memory.
func (w *batchWriter) sendWait(frame []byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.q = append(w.q, frame)
	w.queued++
	if !w.busy {
		return w.flushLocked()
	}
	mine := w.queued
	if w.wrote == nil {
		w.wrote = sync.NewCond(&w.mu)
	}
	for w.written < mine && w.err == nil {
		w.wrote.Wait()
	}
	err := w.err
	w.mu.Unlock()
	return err
}

func (w *batchWriter) flush() error {
	w.mu.Lock()
	return w.flushLocked()
}

func (w *batchWriter) flushLocked() error {
	if w.busy || len(w.q) == 0 {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.busy = true
	for len(w.q) > 0 && w.err == nil {
		batch := w.q
		w.q = w.spare[:0]
		w.mu.Unlock()
		err := w.conn.SendFrames(context.Background(), batch...)
		clear(batch)
		w.mu.Lock()
		w.spare = batch[:0]
		w.written += uint64(len(batch))
		if err != nil {
			w.err = err
		}
		if w.wrote != nil {
			w.wrote.Broadcast()
		}
	}
	w.busy = false
	err := w.err
	w.mu.Unlock()
	return err
}
