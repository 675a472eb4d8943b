// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"sync"
)

// A Batcher writes the frames of concurrent senders on one Conn with as
// few system calls as it can: whoever finds no write in progress writes
// its frames and every frame queued meanwhile, without handing them to
// another goroutine, so no frame waits for a write that nobody makes.
// Frames may also be queued without writing (Enqueue) and written later
// in one call (Flush), which lets a reader answer a burst of requests with
// one write.
//
// After a write fails, the Batcher drops what it holds and every later
// call returns that error: a connection that failed a write is broken.
// A Batcher is safe for concurrent use; the frames passed to it must not
// change until they are written.
type Batcher struct {
	conn   *Conn
	mu     sync.Mutex
	q      [][]byte
	spare  [][]byte
	lazy   []LazyFrame // among q (LazyFrame.Before indexes q)
	lspare []LazyFrame
	busy   bool
	err    error

	queued, written uint64     // frames queued and written so far
	wrote           *sync.Cond // on mu, made by SendWait: written moved
}

// NewBatcher returns a Batcher that writes on c.
func NewBatcher(c *Conn) *Batcher { return &Batcher{conn: c} }

// Enqueue queues frames without writing them; Flush or Send writes them.
func (b *Batcher) Enqueue(frames ...[]byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	b.q = append(b.q, frames...)
	b.queued += uint64(len(frames))
	return nil
}

// EnqueueLazy queues a lazy frame (see LazyFrame) after the frames
// queued so far, without writing it; its Fill runs when it is written.
func (b *Batcher) EnqueueLazy(size int, fill func(dst []byte) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	b.lazy = append(b.lazy, LazyFrame{Before: len(b.q), Size: size, Fill: fill})
	b.queued++
	return nil
}

// Send queues frames and writes them, with any queued before, unless
// another goroutine is writing, which then writes them too before it
// returns.
func (b *Batcher) Send(frames ...[]byte) error {
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return err
	}
	b.q = append(b.q, frames...)
	b.queued += uint64(len(frames))
	return b.flushLocked()
}

// SendWait is Send that returns only once frame has been written (or a
// write failed), even when another goroutine writes it. A server uses it
// to keep a call's place in its bounds until the answer has left, so that
// answers a client does not read cannot pile up in memory.
func (b *Batcher) SendWait(frame []byte) error {
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return err
	}
	b.q = append(b.q, frame)
	b.queued++
	if !b.busy {
		return b.flushLocked()
	}
	mine := b.queued
	if b.wrote == nil {
		b.wrote = sync.NewCond(&b.mu)
	}
	for b.written < mine && b.err == nil {
		b.wrote.Wait()
	}
	err := b.err
	b.mu.Unlock()
	return err
}

// Flush writes the queued frames (see Send).
func (b *Batcher) Flush() error {
	b.mu.Lock()
	return b.flushLocked()
}

func (b *Batcher) flushLocked() error {
	if b.busy || (len(b.q) == 0 && len(b.lazy) == 0) {
		err := b.err
		b.mu.Unlock()
		return err
	}
	b.busy = true
	for (len(b.q) > 0 || len(b.lazy) > 0) && b.err == nil {
		batch, lazy := b.q, b.lazy
		b.q, b.lazy = b.spare[:0], b.lspare[:0]
		b.mu.Unlock()
		var err error
		if len(lazy) == 0 {
			err = b.conn.SendFrames(context.Background(), batch...)
		} else {
			err = b.conn.SendFramesLazy(context.Background(), batch, lazy)
		}
		clear(batch)
		clear(lazy)
		b.mu.Lock()
		b.spare, b.lspare = batch[:0], lazy[:0]
		b.written += uint64(len(batch) + len(lazy))
		if err != nil {
			b.err = err
			clear(b.q)
			b.q = b.q[:0]
			clear(b.lazy)
			b.lazy = b.lazy[:0]
		}
		if b.wrote != nil {
			b.wrote.Broadcast()
		}
	}
	b.busy = false
	err := b.err
	b.mu.Unlock()
	return err
}
