// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/base/futex"
	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/shm"
)

// The contended benchmark is the baseline kit's workload: two new
// processes each make incrPerRound increments of one shared counter under
// the lock, timed from the start signal until both are done; each round
// starts its own two processes, as each of the kit's repeats does (where
// the scheduler puts two processes just started decides much of the
// figure). Its shared block (byte offsets): 0 the counter, 64 the floor
// mutex's word, 128 the start signal (a futex word), 192 the number of
// processes done (a futex word), 256 the number ready.
const (
	incrPerRound = 500000 // the kit's lock.futex.contended2: 500k each
	incrBlock    = 512
)

// incrWords are the harness's words in a contended benchmark's block.
type incrWords struct {
	counter                   *uint64
	floor, start, done, ready *uint32
}

func incrWordsOf(b *shm.Block) incrWords {
	return incrWords{counter: word64(b, 0), floor: word32(b, 16), start: word32(b, 32),
		done: word32(b, 48), ready: word32(b, 64)}
}

var _ = mptest.RegisterHelper("bench-incr", func() {
	// Makes incrPerRound increments under a Lock (handles: the Lock,
	// then the block) or the floor mutex (handle: the block) once the
	// start signal is given, then says it is done.
	var blk shm.Block
	var l *Lock
	if os.Args[len(os.Args)-1] == "floor" {
		attach(0, &blk)
	} else {
		l = new(Lock)
		attach(0, l)
		attach(1, &blk)
	}
	w := incrWordsOf(&blk)
	atomic.AddUint32(w.ready, 1)
	futex.Wake(w.ready, 1)
	for atomic.LoadUint32(w.start) == 0 {
		futex.Wait(w.start, 0, futex.Forever)
	}
	if l != nil {
		for range incrPerRound {
			l.Lock()
			*w.counter++
			l.Unlock()
		}
	} else {
		for range incrPerRound {
			floorLock(w.floor)
			*w.counter++
			floorUnlock(w.floor)
		}
	}
	atomic.AddUint32(w.done, 1)
	futex.Wake(w.done, 1)
})

// benchIncr runs the contended benchmark, a round per iteration, with two
// processes that start starts on blk each round, and reports the rate of
// both processes' increments in the median round, as the kit reports the
// median of its repeats.
func benchIncr(b *testing.B, blk *shm.Block, start func() (*proc, *proc)) {
	w := incrWordsOf(blk)
	waitWord := func(word *uint32, want uint32, what string) {
		deadline := time.Now().Add(time.Minute) // a ceiling: a child died
		for {
			v := atomic.LoadUint32(word)
			if v >= want {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s: %d of %d after a minute", what, v, want)
			}
			futex.Wait(word, v, 100*time.Millisecond)
		}
	}
	var rounds []time.Duration
	for b.Loop() {
		atomic.StoreUint32(w.ready, 0)
		atomic.StoreUint32(w.start, 0)
		atomic.StoreUint32(w.done, 0)
		c1, c2 := start()
		waitWord(w.ready, 2, "children ready")
		t0 := time.Now()
		atomic.StoreUint32(w.start, 1)
		futex.WakeAll(w.start)
		waitWord(w.done, 2, "children done")
		rounds = append(rounds, time.Since(t0))
		c1.wait()
		c2.wait()
	}
	if got, want := atomic.LoadUint64(w.counter), uint64(2*incrPerRound*len(rounds)); got != want {
		b.Fatalf("counter %d, want %d", got, want)
	}
	slices.Sort(rounds)
	b.ReportMetric(2*incrPerRound/rounds[len(rounds)/2].Seconds(), "ops/s")
}

// floorLock and floorUnlock are the kit's futex mutex (Drepper's
// "Futexes are tricky", mutex 2: no spinning, no owner), the floor of
// lock.contended2 measured in the same harness as our Lock.
func floorLock(v *uint32) {
	if atomic.CompareAndSwapUint32(v, 0, 1) {
		return
	}
	c := atomic.LoadUint32(v)
	if c != 2 {
		c = atomic.SwapUint32(v, 2)
	}
	for c != 0 {
		futex.Wait(v, 2, futex.Forever)
		c = atomic.SwapUint32(v, 2)
	}
}

func floorUnlock(v *uint32) {
	if atomic.AddUint32(v, ^uint32(0)) != 0 {
		atomic.StoreUint32(v, 0)
		futex.Wake(v, 1)
	}
}

var _ = mptest.RegisterHelper("bench-incr-floor", func() {
	// bench-incr with the floor mutex (its word at byte 128 of the block).
	blk, ready := new(shm.Block), new(Event)
	attach(0, blk)
	attach(1, ready)
	counter, stop, w := word64(blk, 0), word64(blk, 8), word32(blk, 32)
	must(ready.Set(), "ready")
	n := uint64(0)
	for atomic.LoadUint64(stop) == 0 {
		floorLock(w)
		*counter++
		floorUnlock(w)
		n++
	}
	atomic.StoreUint64(word64(blk, 16), n)
})

var _ = mptest.RegisterHelper("bench-sem-pong", func() {
	// Answers each release of s1 with a release of s2 until the stop
	// flag is set.
	s1, s2, blk := new(Semaphore), new(Semaphore), new(shm.Block)
	attach(0, s1)
	attach(1, s2)
	attach(2, blk)
	for {
		must(s1.Acquire(bg), "acquire")
		if atomic.LoadUint64(word64(blk, 8)) != 0 {
			return
		}
		must(s2.Release(), "release")
	}
})

var _ = mptest.RegisterHelper("bench-event-pong", func() {
	// CPython's _event_pong: wait e1, clear e1, set e2, until stopped.
	e1, e2, blk := new(Event), new(Event), new(shm.Block)
	attach(0, e1)
	attach(1, e2)
	attach(2, blk)
	for {
		must(e1.Wait(bg), "wait")
		if atomic.LoadUint64(word64(blk, 8)) != 0 {
			return
		}
		must(e1.Clear(), "clear")
		must(e2.Set(), "set")
	}
})

// BenchmarkKit measures the baseline kit's lock.*, semaphore.* and event.*
// keys (../shared/bench): CPython's figures are for multiprocessing's Lock,
// Semaphore and Event with the same access patterns.
func BenchmarkKit(b *testing.B) {
	b.Run("lock.uncontended", func(b *testing.B) {
		l, err := NewLock()
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		b.ReportAllocs()
		for b.Loop() {
			l.Acquire(bg)
			l.Release()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns")
	})
	b.Run("lock.contended2", func(b *testing.B) {
		// Two new processes per round increment one shared counter
		// under the lock, 500k increments each, as in the kit.
		l, err := NewLock()
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		blk := newBlock(b, incrBlock)
		benchIncr(b, blk, func() (*proc, *proc) {
			return start(b, "bench-incr", []string{"lock"}, l, blk), start(b, "bench-incr", []string{"lock"}, l, blk)
		})
	})
	b.Run("lock.contended2.floor", func(b *testing.B) {
		// lock.contended2 with the kit's futex mutex instead of a Lock:
		// the floor in the same harness.
		blk := newBlock(b, incrBlock)
		benchIncr(b, blk, func() (*proc, *proc) {
			return start(b, "bench-incr", []string{"floor"}, blk), start(b, "bench-incr", []string{"floor"}, blk)
		})
	})
	b.Run("semaphore.pingpong", func(b *testing.B) {
		s1, err := NewSemaphore(0)
		if err != nil {
			b.Fatal(err)
		}
		defer s1.Close()
		s2, err := NewSemaphore(0)
		if err != nil {
			b.Fatal(err)
		}
		defer s2.Close()
		blk := newBlock(b, 64)
		c := start(b, "bench-sem-pong", nil, s1, s2, blk)
		for i := 0; i < 100; i++ { // warm-up
			s1.Release()
			s2.Acquire(bg)
		}
		b.ReportAllocs()
		for b.Loop() {
			s1.Release()
			if err := s2.Acquire(bg); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "us")
		atomic.StoreUint64(word64(blk, 8), 1)
		s1.Release()
		c.wait()
	})
	b.Run("event.pingpong", func(b *testing.B) {
		e1, err := NewEvent()
		if err != nil {
			b.Fatal(err)
		}
		defer e1.Close()
		e2, err := NewEvent()
		if err != nil {
			b.Fatal(err)
		}
		defer e2.Close()
		blk := newBlock(b, 64)
		c := start(b, "bench-event-pong", nil, e1, e2, blk)
		round := func() {
			e1.Set()
			if err := e2.Wait(bg); err != nil {
				b.Fatal(err)
			}
			e2.Clear()
		}
		for i := 0; i < 100; i++ {
			round()
		}
		b.ReportAllocs()
		for b.Loop() {
			round()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "us")
		atomic.StoreUint64(word64(blk, 8), 1)
		e1.Set()
		c.wait()
	})
}
