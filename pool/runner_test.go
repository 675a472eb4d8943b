// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/multiproc/multiproc/pool"
)

// loopback is a Runner other than *Pool: each call goes through the
// StartCall of a real pool, as the cluster module's agents run chunks.
// The Task methods therefore take their Runner path (encoded chunks out,
// ChunkResults back) end to end.
type loopback struct{ p *pool.Pool }

func (l loopback) Workers() int { return l.p.Workers() }

func (l loopback) StartCall(ctx context.Context, task string, deliver func(pool.ChunkResult)) (pool.Call, error) {
	return l.p.StartCall(ctx, task, deliver)
}

func TestRunnerCalls(t *testing.T) {
	r := loopback{newPool(t, pool.Workers(2))}
	ctx := context.Background()
	got, err := square.Map(ctx, r, ints(1000))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, 1000)
	for i := range want {
		want[i] = i * i
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("Map (-want +got):\n%s", d)
	}
	var ordered []int
	for v, err := range square.Imap(ctx, r, slices.Values(ints(300)), pool.Chunksize(7)) {
		if err != nil {
			t.Fatal(err)
		}
		ordered = append(ordered, v)
	}
	if d := cmp.Diff(want[:300], ordered); d != "" {
		t.Fatalf("Imap (-want +got):\n%s", d)
	}
	var unordered []int
	for v, err := range square.ImapUnordered(ctx, r, slices.Values(ints(300))) {
		if err != nil {
			t.Fatal(err)
		}
		unordered = append(unordered, v)
	}
	slices.Sort(unordered)
	if d := cmp.Diff(want[:300], unordered); d != "" {
		t.Fatalf("ImapUnordered (-want +got):\n%s", d)
	}
	if v, err := square.Apply(ctx, r, 9); err != nil || v != 81 {
		t.Fatalf("Apply = %d, %v", v, err)
	}
	if v, err := concat.Submit(ctx, r, pool.Args2[string, int]{A: "ab", B: 3}).Get(ctx); err != nil || v != "ababab" {
		t.Fatalf("Submit = %q, %v", v, err)
	}
	// The failed task with the lowest index, as on the pool itself.
	_, err = fail.Map(ctx, r, ints(100), pool.Chunksize(10))
	var re *pool.RemoteError
	if !errors.As(err, &re) || re.Index != 3 || !errors.Is(err, err) {
		t.Fatalf("Map of failing tasks: %v", err)
	}
}

// A task timeout splits a chunk in the pool: StartCall still answers the
// chunk once, whole. (The quick tasks must not time out: a slack of 2s,
// not 100ms, after their deadline, as in TestTaskTimeout.)
func TestRunnerTimeoutSplitsChunk(t *testing.T) {
	r := loopback{newPool(t, pool.Workers(1), pool.TaskTimeout(300*time.Millisecond), pool.KillGrace(100*time.Millisecond),
		pool.TimeoutSlack(2*time.Second))}
	in := []time.Duration{0, 0, time.Hour, 0, 0}
	res, err := stubborn.Map(context.Background(), r, in, pool.Chunksize(5))
	var te *pool.TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("Map = %v, want a *TimeoutError", err)
	}
	for i, v := range res {
		if i != 2 && v == 0 {
			t.Errorf("result %d missing: %v", i, res)
		}
	}
}

func TestRunnerWorkerDeath(t *testing.T) {
	r := loopback{newPool(t, pool.Workers(1))}
	_, err := suicide.Apply(context.Background(), r, -1)
	if !errors.Is(err, pool.ErrWorkerDied) {
		t.Fatalf("Apply = %v, want ErrWorkerDied", err)
	}
	if v, err := suicide.Apply(context.Background(), r, 5); err != nil || v != 5 {
		t.Fatalf("Apply after the death = %d, %v", v, err)
	}
}

func TestStartCallUnknownTask(t *testing.T) {
	p := newPool(t, pool.Workers(1))
	if _, err := p.StartCall(context.Background(), "no.such.task", func(pool.ChunkResult) {}); !errors.Is(err, pool.ErrNotRegistered) {
		t.Fatalf("StartCall = %v, want ErrNotRegistered", err)
	}
}

func TestRunnerCancel(t *testing.T) {
	r := loopback{newPool(t, pool.Workers(2))}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := sleep.Map(ctx, r, []time.Duration{time.Hour, time.Hour})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Map = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("Map returned after %v", d)
	}
}

// batchLoopback is a loopback whose calls take batches (pool.BatchCall):
// it records the batches and refuses the chunk starting at refuse.
type batchLoopback struct {
	loopback
	refuse  int
	batches *[]int
}

type batchCall struct {
	pool.Call
	r batchLoopback
}

func (b batchLoopback) StartCall(ctx context.Context, task string, deliver func(pool.ChunkResult)) (pool.Call, error) {
	c, err := b.loopback.StartCall(ctx, task, deliver)
	if err != nil {
		return nil, err
	}
	return batchCall{c, b}, nil
}

var errRefused = errors.New("refused")

func (c batchCall) SendBatch(chunks []pool.ChunkIn) (int, error) {
	*c.r.batches = append(*c.r.batches, len(chunks))
	for i, ch := range chunks {
		if ch.Start == c.r.refuse {
			return i, errRefused
		}
		if err := c.Send(ch.Start, ch.N, ch.Inputs); err != nil {
			return i, err
		}
	}
	return len(chunks), nil
}

// Map hands a BatchCall all of its chunks at once; a chunk it refuses
// fails its tasks alone, and the chunks after it are sent.
func TestRunnerBatchCall(t *testing.T) {
	var batches []int
	r := batchLoopback{loopback{newPool(t, pool.Workers(2))}, 50, &batches}
	got, err := square.Map(context.Background(), r, ints(100), pool.Chunksize(10))
	if !errors.Is(err, errRefused) {
		t.Fatalf("Map = %v, want the refused chunk's error", err)
	}
	for i, v := range got {
		if (i < 50 || i >= 60) && v != i*i {
			t.Fatalf("result %d = %d, want %d", i, v, i*i)
		}
	}
	if !slices.Equal(batches, []int{10, 4}) {
		t.Fatalf("batches of %v chunks, want all 10, then the 4 after the refused one", batches)
	}
}
