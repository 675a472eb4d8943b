// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"

	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/shm"
)

// The crash tests of proc_test.go stop a process at chosen points with
// os.Exit; these SIGKILL it at a random moment of a stream of Puts or
// Gets, with the same invariants: no item torn, none delivered twice, at
// most the one in flight lost (a Get's, with the process), and the queue
// works for the others afterwards.

var (
	// fnPutForever puts items (0, 0), (0, 1), ... of random sizes, some
	// big enough to grow the ring, until it is killed.
	fnPutForever = process.Register("queue.test.putforever", func(ctx context.Context, q *Queue[[]byte], seed uint64) error {
		r := rand.New(rand.NewPCG(seed, 1))
		for i := 0; ; i++ {
			if err := q.Put(ctx, makeItem(0, i, randomItemSize(r))); err != nil {
				return err
			}
		}
	})

	// fnGetForever gets items and counts each in counts[seq], until it is
	// killed.
	fnGetForever = process.Register("queue.test.getforever", func(ctx context.Context, q *Queue[[]byte], counts *shm.Array[uint32]) error {
		c := counts.Slice()
		for {
			b, err := q.Get(ctx)
			if err != nil {
				return err
			}
			_, seq, err := checkItem(b)
			if err != nil {
				return err
			}
			c[seq]++
		}
	})
)

// randomItemSize is mostly small items, some of a few KiB, and now and
// then one of up to 512 KiB (more than the initial ring).
func randomItemSize(r *rand.Rand) int {
	switch n := r.IntN(100); {
	case n < 80:
		return 8 + r.IntN(64)
	case n < 98:
		return 8 + r.IntN(8<<10)
	default:
		return 8 + r.IntN(512<<10)
	}
}

// killWhen SIGKILLs p once cond holds, and checks that the kill is what
// ended it.
func killWhen(t *testing.T, ctx context.Context, p *process.Process, cond func() bool) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatal("the child made no progress")
		}
		if !p.Alive() {
			t.Fatalf("the child exited before it was killed: %v", p.Join(ctx))
		}
		runtime.Gosched()
	}
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ee *process.ExitError
	if err := p.Join(ctx); !errors.As(err, &ee) || ee.Signal != syscall.SIGKILL {
		t.Fatalf("child: %v, want killed by SIGKILL", err)
	}
}

// A producer SIGKILLed at a random moment of a stream of Puts: the queue
// holds exactly its first k items, whole and in order (the Put it was in
// happened entirely or not at all), and works afterwards.
func TestProducerKilledAtRandom(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	for round := range 12 {
		q := must[*Queue[[]byte]](t)(New[[]byte]())
		p := start(t, fnPutForever.Process(q, r.Uint64()))
		at := 1 + r.IntN(3000)
		killWhen(t, ctx, p, func() bool { return q.Len() >= at })
		n := 0
		for !q.Empty() {
			b := must[[]byte](t)(q.Get(ctx))
			id, seq, err := checkItem(b)
			if err != nil {
				t.Fatalf("round %d: item %d: %v", round, n, err)
			}
			if id != 0 || seq != n {
				t.Fatalf("round %d: item %d is (%d, %d): lost or duplicated items", round, n, id, seq)
			}
			n++
		}
		if n < at {
			t.Fatalf("round %d: %d items after the kill, but %d were seen queued", round, n, at)
		}
		// The Put the producer died in may have been journaled: the next
		// producer to take the lock (this test's first Put) completes it,
		// so item n may appear then, ahead of the test's own items.
		checkQueueWorksAfter(t, ctx, q, n)
		q.Close()
	}
}

// A consumer SIGKILLed at a random moment of a stream of Gets: every item
// was either got by it or is still queued, in order, exactly once; at
// most one item (the Get it was in) is lost with it; none is torn.
func TestConsumerKilledAtRandom(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	const total = 3000
	for round := range 12 {
		q := must[*Queue[[]byte]](t)(New[[]byte]())
		for i := range total {
			if err := q.Put(ctx, makeItem(0, i, randomItemSize(r))); err != nil {
				t.Fatal(err)
			}
		}
		counts := must[*shm.Array[uint32]](t)(shm.NewArray[uint32](total))
		p := start(t, fnGetForever.Process(q, counts))
		at := 1 + r.IntN(total-1)
		killWhen(t, ctx, p, func() bool { return q.Len() <= total-at })
		c := counts.Slice()
		queued := make([]bool, total)
		first := -1
		for !q.Empty() {
			b := must[[]byte](t)(q.Get(ctx))
			_, seq, err := checkItem(b)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if first < 0 {
				first = seq
			}
			if queued[seq] || seq < first {
				t.Fatalf("round %d: item %d got out of order or twice", round, seq)
			}
			queued[seq] = true
		}
		lost := 0
		for seq := range total {
			switch got := int(c[seq]); {
			case got > 1 || got == 1 && queued[seq]:
				t.Fatalf("round %d: item %d delivered twice", round, seq)
			case got == 0 && !queued[seq]:
				lost++
			}
		}
		if lost > 1 {
			t.Fatalf("round %d: %d items lost, want at most the one being got", round, lost)
		}
		checkQueueWorks(t, ctx, q)
		counts.Close()
		q.Close()
	}
}

// checkQueueWorks checks that both of q's locks work: a Put and a Get,
// blocking and not.
func checkQueueWorks(t *testing.T, ctx context.Context, q *Queue[[]byte]) {
	t.Helper()
	checkQueueWorksAfter(t, ctx, q, -1)
}

// checkQueueWorksAfter is checkQueueWorks where the dead producer's item
// rolled (0, next) may come first, completed by the test's first Put
// (next < 0: no such item is allowed).
func checkQueueWorksAfter(t *testing.T, ctx context.Context, q *Queue[[]byte], next int) {
	t.Helper()
	if err := q.Put(ctx, makeItem(1, 0, 100)); err != nil {
		t.Fatal(err)
	}
	if err := q.TryPut(makeItem(1, 1, 8)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; {
		b, err := q.TryGet()
		if err != nil {
			t.Fatal(err)
		}
		id, seq, err := checkItem(b)
		if err == nil && id == 0 && next >= 0 && seq == next && i == 0 {
			next = -1 // the dead producer's journaled Put, completed: once
			continue
		}
		if err != nil || id != 1 || seq != i {
			t.Fatalf("after the kill: got (%d, %d) %v, want (1, %d)", id, seq, err, i)
		}
		i++
	}
}
