// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"sync/atomic"
	"unsafe"

	"github.com/multiproc/multiproc/shm"
)

// The progress word tells the pool which task a worker process was running
// when it died, so that the death costs that task alone, not its chunk.
// It is 8 bytes of shared memory (an anonymous shm segment, one per
// worker) that the worker writes and the pool reads only once the worker
// is dead. The worker numbers the chunks it receives 1, 2, 3... (the pool
// numbers the chunks it sends to it the same way: chunk.order); the high
// half of the word holds the number of the chunk the worker is on, the
// low half what it is doing there:
//
//   - markIdle: nothing; that chunk is done (its result may not have left);
//   - i+1: task i of that chunk is running (or, once its result went out
//     in a partial result, the worker is between task i and task i+1);
//   - markChunk: decoding the chunk's arguments or encoding its results;
//   - markFinishing: its results are encoded; the worker is finishing the
//     chunk (stopping its watcher, queueing the result).
//
// A store per task is one plain memory write: a dead process's writes
// are all visible to the pool, and the pool never reads a live worker's
// word, so no atomic instruction is needed on the worker's side.
const (
	markIdle      = 0
	markChunk     = 0xFFFFFFFF
	markFinishing = 0xFFFFFFFE
)

// progressSize is the size of a progress segment.
const progressSize = 8

// progressWord returns the word in seg (nil if seg is nil or too short).
func progressWord(seg *shm.Segment) *uint64 {
	if seg == nil {
		return nil
	}
	b := seg.Bytes()
	if len(b) < progressSize {
		return nil
	}
	return (*uint64)(unsafe.Pointer(&b[0]))
}

// lastProgress is what a dead worker's progress word says.
type lastProgress struct {
	known bool   // the worker had a progress word
	order uint32 // the chunk it was on
	state uint32 // markIdle, task index+1 or markChunk
}

func readProgress(word *uint64) lastProgress {
	if word == nil {
		return lastProgress{}
	}
	v := atomic.LoadUint64(word)
	return lastProgress{known: true, order: uint32(v >> 32), state: uint32(v)}
}

// task returns the index of the task that was running, if one was.
func (lp lastProgress) task() (int, bool) {
	if !lp.known || lp.state == markIdle || lp.state == markChunk || lp.state == markFinishing {
		return 0, false
	}
	return int(lp.state - 1), true
}

// on reports whether the worker was on chunk c (by its order).
func (lp lastProgress) on(c *chunk) bool { return lp.known && uint32(c.order) == lp.order }

// notReached reports whether the worker had not reached chunk c yet.
func (lp lastProgress) notReached(c *chunk) bool {
	return !lp.known || int32(uint32(c.order)-lp.order) > 0
}
