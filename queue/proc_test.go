// SPDX-License-Identifier: Apache-2.0

package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/multiproc/multiproc/internal/base/race"
	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/shm"
	"github.com/multiproc/multiproc/syncprim"
)

// Functions run in child processes by the tests below.
var (
	// fnMove gets n items from in and puts them on out.
	fnMove = process.Register("queue.test.move", func(ctx context.Context, in, out *Queue[int], n int) error {
		defer in.Close()
		defer out.Close()
		for range n {
			v, err := in.Get(ctx)
			if err != nil {
				return err
			}
			if err := out.Put(ctx, v); err != nil {
				return err
			}
		}
		return nil
	})

	// fnSizes is TestSyncManagerTypes._test_queue.
	fnSizes = process.Register("queue.test.sizes", func(ctx context.Context, q *Queue[int]) error {
		defer q.Close()
		return checkSizes(ctx, q)
	})
	fnSizesJoinable = process.Register("queue.test.sizes.joinable", func(ctx context.Context, q *JoinableQueue[int]) error {
		defer q.Close()
		if err := checkSizes(ctx, &q.Queue); err != nil {
			return err
		}
		if err := q.TaskDone(); err != nil {
			return err
		}
		return q.TaskDone()
	})

	// fnSimpleEmpty is TestSimpleQueue._test_empty.
	fnSimpleEmpty = process.Register("queue.test.simple.empty", func(ctx context.Context, q *SimpleQueue[bool]) error {
		defer q.Close()
		if err := q.Put(ctx, q.Empty()); err != nil {
			return err
		}
		return q.Put(ctx, q.Empty())
	})

	// fnTaskWorker is _TestQueue._test_task_done's worker: it squares
	// items until it gets -1, reporting each as done.
	fnTaskWorker = process.Register("queue.test.taskworker", func(ctx context.Context, q *JoinableQueue[int], out *Queue[int]) error {
		defer q.Close()
		defer out.Close()
		for {
			v, err := q.Get(ctx)
			if err != nil {
				return err
			}
			if v < 0 {
				return q.TaskDone()
			}
			if err := out.Put(ctx, v*v); err != nil {
				return err
			}
			if err := q.TaskDone(); err != nil {
				return err
			}
		}
	})

	// fnProduce puts n small items tagged (id, seq), and at seq == big a
	// 16 MiB one.
	fnProduce = process.Register("queue.test.produce", func(ctx context.Context, q *Queue[[]byte], id, n, big int) error {
		defer q.Close()
		for i := range n {
			size := 8
			if i == big {
				size = 16 << 20
			}
			if err := q.Put(ctx, makeItem(id, i, size)); err != nil {
				return err
			}
		}
		return nil
	})

	// fnConsume takes items until a sentinel, checks them, and counts
	// each in counts (by id*per + seq).
	fnConsume = process.Register("queue.test.consume", func(ctx context.Context, q *Queue[[]byte], counts *shm.Array[uint32], per int, started *syncprim.Event) error {
		defer q.Close()
		defer counts.Close()
		defer started.Close()
		c := counts.Slice()
		last := map[int]int{}
		for n := 0; ; n++ {
			if n == 1000 {
				started.Set()
			}
			b, err := q.Get(ctx)
			if err != nil {
				return err
			}
			id, seq, err := checkItem(b)
			if err != nil {
				return err
			}
			if id < 0 {
				return nil
			}
			if l, ok := last[id]; ok && seq <= l {
				return fmt.Errorf("producer %d: item %d after item %d", id, seq, l)
			}
			last[id] = seq
			atomic.AddUint32(&c[id*per+seq], 1)
		}
	})

	// fnPutAndExit puts n items, one of them 1 MiB, and returns at once.
	fnPutAndExit = process.Register("queue.test.putexit", func(ctx context.Context, q *Queue[[]byte], n int) error {
		for i := range n {
			size := 8
			if i == n/2 {
				size = 1 << 20
			}
			if err := q.Put(ctx, makeItem(0, i, size)); err != nil {
				return err
			}
		}
		return nil // no Close: the process exit releases the handle
	})

	// fnCrashGrow dies in the middle of growing the ring for a big item.
	fnCrashGrow = process.Register("queue.test.crashgrow", func(ctx context.Context, q *Queue[[]byte]) error {
		crashAt = crashGrowCopied
		q.Put(ctx, makeItem(1, 0, 2<<20))
		return errors.New("did not crash")
	})

	// fnGetOne waits for one item.
	fnGetOne = process.Register("queue.test.getone", func(ctx context.Context, q *Queue[int]) error {
		_, err := q.Get(ctx)
		return err
	})

	// fnCrash dies at a crash point inside a Put (of v) or a Get.
	fnCrash = process.Register("queue.test.crash", func(ctx context.Context, q *Queue[int], at, v int) error {
		crashAt = at
		switch at {
		case crashPutWritten, crashPutJournaled:
			q.Put(ctx, v)
		default:
			q.Get(ctx)
		}
		return errors.New("did not crash")
	})
)

func checkSizes(ctx context.Context, q *Queue[int]) error {
	if n := q.Len(); n != 2 {
		return fmt.Errorf("Len = %d, want 2", n)
	}
	if !q.Full() || q.Empty() {
		return fmt.Errorf("Full %v Empty %v, want true false", q.Full(), q.Empty())
	}
	if v, err := q.Get(ctx); v != 5 || err != nil {
		return fmt.Errorf("Get = %v, %v; want 5", v, err)
	}
	if q.Empty() {
		return errors.New("empty after one Get")
	}
	if v, err := q.Get(ctx); v != 6 || err != nil {
		return fmt.Errorf("Get = %v, %v; want 6", v, err)
	}
	if !q.Empty() {
		return errors.New("not empty after two Gets")
	}
	return nil
}

// Items of the many-process tests: producer id and sequence number, then
// a pattern that depends on both. A sentinel has id -1.
func makeItem(id, seq, size int) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint32(b, uint32(int32(id)))
	binary.LittleEndian.PutUint32(b[4:], uint32(seq))
	fillPattern(b[8:], byte(id*31+seq+8))
	return b
}

// fillPattern sets b[i] = base+i (mod 256), by doubling copies (fast for
// 16 MiB, also under -race).
func fillPattern(b []byte, base byte) {
	for i := 0; i < len(b) && i < 256; i++ {
		b[i] = base + byte(i)
	}
	for n := 256; n < len(b); n *= 2 {
		copy(b[n:], b[:n])
	}
}

func checkItem(b []byte) (id, seq int, err error) {
	if len(b) < 8 {
		return 0, 0, fmt.Errorf("item of %d bytes", len(b))
	}
	id, seq = int(int32(binary.LittleEndian.Uint32(b))), int(binary.LittleEndian.Uint32(b[4:]))
	if !bytes.Equal(b, makeItem(id, seq, len(b))) {
		return 0, 0, fmt.Errorf("item (%d, %d) of %d bytes is corrupt", id, seq, len(b))
	}
	return id, seq, nil
}

func start(t *testing.T, p *process.Process) *process.Process {
	t.Helper()
	if err := p.Start(ctxT(t)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		p.Kill()
		p.Join(context.Background())
		p.Close()
	})
	return p
}

func join(t *testing.T, p *process.Process) {
	t.Helper()
	if err := p.Join(ctxT(t)); err != nil {
		t.Fatalf("%v: %v", p, err)
	}
}

// _TestQueue.test_put's second half: a child takes what the parent put.
func TestChildGets(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	q := must[*Queue[int]](t)(New[int](MaxSize(6)))
	defer q.Close()
	out := must[*Queue[int]](t)(New[int]())
	defer out.Close()
	for i := range 6 {
		q.Put(ctx, i)
	}
	p := start(t, fnMove.Process(q, out, 10))
	for i := 6; i < 10; i++ {
		if err := q.Put(ctx, i); err != nil { // waits for the child to make room
			t.Fatal(err)
		}
	}
	join(t, p)
	for i := range 10 {
		if v, err := out.Get(ctx); v != i || err != nil {
			t.Fatalf("Get = %v, %v; want %d", v, err, i)
		}
	}
	if !q.Empty() || !out.Empty() {
		t.Error("queues not empty")
	}
}

// TestSyncManagerTypes.test_queue and test_joinable_queue.
func TestSizesInChild(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	q := must[*Queue[int]](t)(New[int](MaxSize(2)))
	defer q.Close()
	q.Put(ctx, 5)
	q.Put(ctx, 6)
	join(t, start(t, fnSizes.Process(q)))
	if !q.Empty() || q.Full() {
		t.Errorf("parent: Empty %v Full %v", q.Empty(), q.Full())
	}

	j := must[*JoinableQueue[int]](t)(NewJoinable[int](MaxSize(2)))
	defer j.Close()
	j.Put(ctx, 5)
	j.Put(ctx, 6)
	join(t, start(t, fnSizesJoinable.Process(j)))
	if err := j.Join(ctx); err != nil {
		t.Error(err)
	}
	if !j.Empty() || j.Full() || j.Unfinished() != 0 {
		t.Errorf("parent: Empty %v Full %v Unfinished %d", j.Empty(), j.Full(), j.Unfinished())
	}
}

// TestSimpleQueue.test_empty: Empty is exact across processes.
func TestSimpleQueueEmpty(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	q := must[*SimpleQueue[bool]](t)(NewSimple[bool]())
	defer q.Close()
	if !q.Empty() {
		t.Fatal("new queue not empty")
	}
	join(t, start(t, fnSimpleEmpty.Process(q)))
	if q.Empty() {
		t.Fatal("empty after the child's puts")
	}
	for _, want := range []bool{true, false} {
		if v, err := q.Get(ctx); v != want || err != nil {
			t.Errorf("Get = %v, %v; want %v", v, err, want)
		}
	}
	if !q.Empty() {
		t.Error("not empty at the end")
	}
	// A SimpleQueue handle is not a Queue handle.
	files, desc, err := q.MultiprocHandle()
	if err != nil {
		t.Fatal(err)
	}
	var wrong Queue[bool]
	if err := wrong.MultiprocAttach(files, desc); !errors.Is(err, ErrBadHandle) {
		t.Errorf("attach as Queue = %v", err)
	}
}

// _TestQueue.test_task_done: 4 worker processes, Join.
func TestTaskDone(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	q := must[*JoinableQueue[int]](t)(NewJoinable[int]())
	defer q.Close()
	out := must[*Queue[int]](t)(New[int]())
	defer out.Close()
	var ps []*process.Process
	for range 4 {
		ps = append(ps, start(t, fnTaskWorker.Process(q, out)))
	}
	want := 0
	for i := range 10 {
		q.Put(ctx, i)
		want += i * i
	}
	if err := q.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if q.Unfinished() != 0 {
		t.Errorf("Unfinished = %d after Join", q.Unfinished())
	}
	if out.Len() != 10 {
		t.Errorf("%d results after Join, want 10", out.Len())
	}
	for range ps {
		q.Put(ctx, -1)
	}
	for _, p := range ps {
		join(t, p)
	}
	got := 0
	for range 10 {
		got += must[int](t)(out.Get(ctx))
	}
	if got != want {
		t.Errorf("sum of squares = %d, want %d", got, want)
	}
	if err := q.TaskDone(); err != ErrTaskDone {
		t.Errorf("TaskDone once too often = %v", err)
	}
}

// itemsFromEnv is the item count of TestManyProcesses: 1,000,000 by
// default (about 1 s on 2 CPUs), 200k under -race, 20k with -short;
// MPQUEUE_ITEMS overrides.
func itemsFromEnv(t *testing.T) int {
	if s := os.Getenv("MPQUEUE_ITEMS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("MPQUEUE_ITEMS: %v", err)
		}
		return n
	}
	switch {
	case testing.Short():
		return 20_000
	case race.Enabled:
		return 200_000
	}
	return 1_000_000
}

// Many producer and consumer processes: every item arrives exactly once,
// intact (16 MiB items among the small ones), in each producer's order.
func TestManyProcesses(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	const producers, consumers = 4, 4
	per := itemsFromEnv(t) / producers
	q := must[*Queue[[]byte]](t)(New[[]byte](MaxSize(10_000)))
	defer q.Close()
	counts := must[*shm.Array[uint32]](t)(shm.NewArray[uint32](producers * per))
	defer counts.Close()
	ev := must[*syncprim.Event](t)(syncprim.NewEvent())
	defer ev.Close()
	var cs, ps []*process.Process
	for range consumers {
		cs = append(cs, start(t, fnConsume.Process(q, counts, per, ev)))
	}
	for id := range producers {
		ps = append(ps, start(t, fnProduce.Process(q, id, per, per/2)))
	}
	for _, p := range ps {
		join(t, p)
	}
	for range consumers {
		q.Put(ctx, makeItem(-1, 0, 8))
	}
	for _, p := range cs {
		join(t, p)
	}
	for i, n := range counts.Slice() {
		if n != 1 {
			t.Fatalf("item (%d, %d) received %d times", i/per, i%per, n)
		}
	}
	if !q.Empty() {
		t.Errorf("Len = %d at the end", q.Len())
	}
}

// A consumer SIGKILLed mid-stream does not wedge the others; it takes at
// most the item it was getting with it, and nothing is duplicated.
func TestConsumerKilled(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	const per = 30_000
	q := must[*Queue[[]byte]](t)(New[[]byte](MaxSize(500)))
	defer q.Close()
	counts := must[*shm.Array[uint32]](t)(shm.NewArray[uint32](per))
	defer counts.Close()
	victimStarted := must[*syncprim.Event](t)(syncprim.NewEvent())
	defer victimStarted.Close()
	other := must[*syncprim.Event](t)(syncprim.NewEvent())
	defer other.Close()
	// The victim consumes alone until it has taken 1000 items (the bounded
	// queue makes the parent wait for it); then the others start and the
	// victim is killed in the middle of the stream.
	victim := start(t, fnConsume.Process(q, counts, per, victimStarted))
	var cs []*process.Process
	killed := false
	for i := range per {
		if err := q.Put(ctx, makeItem(0, i, 8)); err != nil {
			t.Fatal(err)
		}
		if !killed && victimStarted.IsSet() {
			for range 2 {
				cs = append(cs, start(t, fnConsume.Process(q, counts, per, other)))
			}
			if err := victim.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	if !killed {
		t.Fatal("the victim never got going")
	}
	for range cs {
		q.Put(ctx, makeItem(-1, 0, 8))
	}
	for _, p := range cs {
		join(t, p)
	}
	var err *process.ExitError
	if e := victim.Join(ctx); !errors.As(e, &err) || err.Code != -9 {
		t.Errorf("victim: %v, want killed by SIGKILL", e)
	}
	missing := 0
	for i, n := range counts.Slice() {
		switch n {
		case 0:
			missing++
		case 1:
		default:
			t.Errorf("item %d received %d times", i, n)
		}
	}
	if missing > 1 {
		t.Errorf("%d items lost, want at most 1 (the one the victim was taking)", missing)
	}
	if !q.Empty() {
		t.Errorf("Len = %d at the end", q.Len())
	}
}

// A producer that puts and exits at once neither hangs nor loses items.
func TestProducerExits(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	const n = 2000
	q := must[*Queue[[]byte]](t)(New[[]byte]())
	defer q.Close()
	join(t, start(t, fnPutAndExit.Process(q, n)))
	if q.Len() != n {
		t.Fatalf("Len = %d after the producer exited, want %d", q.Len(), n)
	}
	for i := range n {
		b := must[[]byte](t)(q.Get(ctx))
		if id, seq, err := checkItem(b); err != nil || id != 0 || seq != i {
			t.Fatalf("item %d: (%d, %d) %v", i, id, seq, err)
		}
	}
}

// Processes that die inside a commit, holding a lock: the next process
// repairs the queue, the item is either wholly there or not at all.
func TestCrashRepair(t *testing.T) {
	leakChecks(t)
	for _, tt := range []struct {
		name string
		at   int
		want []int // what the parent then gets, having put 1 and 2
	}{
		{"put/written", crashPutWritten, []int{1, 2}},         // the Put never happened
		{"put/journaled", crashPutJournaled, []int{42, 1, 2}}, // the Put completes
		{"get/copied", crashTakeCopied, []int{10, 1, 2}},      // the item stays
		{"get/journaled", crashTakeJournaled, []int{1, 2}},    // the item is gone
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			q := must[*Queue[int]](t)(New[int](MaxSize(5)))
			defer q.Close()
			if tt.at == crashTakeCopied || tt.at == crashTakeJournaled {
				q.Put(ctx, 10)
			}
			p := start(t, fnCrash.Process(q, tt.at, 42))
			var ee *process.ExitError
			if err := p.Join(ctx); !errors.As(err, &ee) || ee.Code != crashExitCode {
				t.Fatalf("child: %v, want exit code %d", err, crashExitCode)
			}
			for _, v := range []int{1, 2} {
				if err := q.Put(ctx, v); err != nil {
					t.Fatal(err)
				}
			}
			var got []int
			for !q.Empty() {
				got = append(got, must[int](t)(q.Get(ctx)))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			// Both locks work again.
			if err := q.TryPut(3); err != nil {
				t.Error(err)
			}
			if v, err := q.TryGet(); v != 3 || err != nil {
				t.Errorf("TryGet = %v, %v", v, err)
			}
		})
	}
}

// Waiters rescue a commit whose process died before publishing it, even
// when no other process of that side comes along: a consumer waiting on
// an empty queue gets the item, a producer waiting on a full queue gets
// the room.
func TestCrashRescue(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	q := must[*Queue[int]](t)(New[int](MaxSize(1)))
	defer q.Close()
	p := start(t, fnCrash.Process(q, crashPutJournaled, 42))
	var ee *process.ExitError
	if err := p.Join(ctx); !errors.As(err, &ee) || ee.Code != crashExitCode {
		t.Fatalf("child: %v", err)
	}
	if v, err := q.Get(ctx); v != 42 || err != nil {
		t.Fatalf("Get = %v, %v; want 42", v, err)
	}

	q.Put(ctx, 10) // full now
	p = start(t, fnCrash.Process(q, crashTakeJournaled, 0))
	if err := p.Join(ctx); !errors.As(err, &ee) || ee.Code != crashExitCode {
		t.Fatalf("child: %v", err)
	}
	if err := q.Put(ctx, 11); err != nil { // waits until it finds the room
		t.Fatal(err)
	}
	if v, err := q.Get(ctx); v != 11 || err != nil {
		t.Fatalf("Get = %v, %v; want 11", v, err)
	}
}

// A producer that dies while growing the ring (holding both locks) leaves
// the queue intact: the items already queued, wrapped around the ring's
// end, are all there, and the ring grows fine afterwards.
func TestCrashGrow(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	q := must[*Queue[[]byte]](t)(New[[]byte]())
	defer q.Close()
	// Wrap the live bytes around the end of the 256 KiB ring.
	for i := range 3 {
		q.Put(ctx, makeItem(0, i, 60<<10))
	}
	for range 3 {
		q.Get(ctx)
	}
	for i := range 3 {
		q.Put(ctx, makeItem(0, 10+i, 60<<10))
	}
	p := start(t, fnCrashGrow.Process(q))
	var ee *process.ExitError
	if err := p.Join(ctx); !errors.As(err, &ee) || ee.Code != crashExitCode {
		t.Fatalf("child: %v", err)
	}
	if err := q.Put(ctx, makeItem(2, 0, 2<<20)); err != nil {
		t.Fatal(err)
	}
	for _, want := range [][2]int{{0, 10}, {0, 11}, {0, 12}, {2, 0}} {
		b := must[[]byte](t)(q.Get(ctx))
		if id, seq, err := checkItem(b); err != nil || id != want[0] || seq != want[1] {
			t.Fatalf("got (%d, %d) %v, want %v", id, seq, err, want)
		}
	}
	if !q.Empty() {
		t.Errorf("Len = %d", q.Len())
	}
}

// A consumer killed while asleep in Get leaves no trap: later waiters are
// woken, items are not lost.
func TestSleeperKilled(t *testing.T) {
	leakChecks(t)
	ctx := ctxT(t)
	q := must[*Queue[int]](t)(New[int]())
	defer q.Close()
	p := start(t, fnGetOne.Process(q))
	// The child's Get is asleep once it counts itself on the futex word.
	for atomic.LoadUint32(sleepers(q.c.notEmpty)) == 0 {
		if err := ctx.Err(); err != nil {
			t.Fatal("the child never went to sleep")
		}
		runtime.Gosched()
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	p.Join(ctx)
	// The dead child may have left the sleeper bit and count raised.
	dead := atomic.LoadUint32(sleepers(q.c.notEmpty))
	got := make(chan int)
	go func() {
		v, _ := q.Get(ctx)
		got <- v
	}()
	// A later waiter goes to sleep too (it counts itself on the futex
	// word) and the Put wakes it.
	for atomic.LoadUint32(sleepers(q.c.notEmpty)) <= dead {
		if err := ctx.Err(); err != nil {
			t.Fatal("the later Get never went to sleep")
		}
		runtime.Gosched()
	}
	if err := q.Put(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != 7 {
		t.Errorf("Get = %d", v)
	}
}
