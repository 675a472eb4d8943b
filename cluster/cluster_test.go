// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/multiproc/multiproc/pool"
)

func TestCalls(t *testing.T) {
	p := newPool(t)
	ctx := context.Background()
	if w := p.Workers(); w != 2 {
		t.Errorf("Workers = %d, want 2", w)
	}
	want := make([]int, 2000)
	for i := range want {
		want[i] = i * i
	}
	got, err := square.Map(ctx, p, ints(2000))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("Map (-want +got):\n%s", d)
	}
	var progress []pool.Progress
	got, err = square.Map(ctx, p, ints(100), pool.Chunksize(1), pool.OnProgress(func(pr pool.Progress) { progress = append(progress, pr) }))
	if err != nil || !slices.Equal(got, want[:100]) {
		t.Fatalf("Map with chunksize 1 = %v, %v", got, err)
	}
	if len(progress) != 100 || progress[99].Done != 100 {
		t.Errorf("OnProgress: %d calls, last %+v", len(progress), progress[len(progress)-1])
	}
	var ordered []int
	for v, err := range square.Imap(ctx, p, slices.Values(ints(300)), pool.Chunksize(7)) {
		if err != nil {
			t.Fatal(err)
		}
		ordered = append(ordered, v)
	}
	if d := cmp.Diff(want[:300], ordered); d != "" {
		t.Fatalf("Imap (-want +got):\n%s", d)
	}
	var unordered []int
	for v, err := range square.ImapUnordered(ctx, p, slices.Values(ints(300))) {
		if err != nil {
			t.Fatal(err)
		}
		unordered = append(unordered, v)
	}
	slices.Sort(unordered)
	if d := cmp.Diff(want[:300], unordered); d != "" {
		t.Fatalf("ImapUnordered (-want +got):\n%s", d)
	}
	if v, err := square.Apply(ctx, p, 12); err != nil || v != 144 {
		t.Fatalf("Apply = %d, %v", v, err)
	}
	f := square.Submit(ctx, p, 5)
	if v, err := f.Get(ctx); err != nil || v != 25 {
		t.Fatalf("Submit = %d, %v", v, err)
	}
	done := make(chan int, 1)
	square.ApplyAsync(ctx, p, 6, func(v int) { done <- v }, nil)
	if v := <-done; v != 36 {
		t.Fatalf("ApplyAsync callback got %d", v)
	}
	s, err := pool.Starmap(ctx, p, concat, []pool.Args2[string, int]{{A: "ab", B: 2}, {A: "c", B: 3}})
	if err != nil || !slices.Equal(s, []string{"abab", "ccc"}) {
		t.Fatalf("Starmap = %q, %v", s, err)
	}
	// The failed task with the lowest index, with the task's error kept.
	res, err := fail.Map(ctx, p, ints(100), pool.Chunksize(10))
	var re *pool.RemoteError
	if !errors.As(err, &re) || re.Index != 3 || re.Task != "ctest.fail" || !errors.Is(err, errBoom) {
		t.Fatalf("Map of failing tasks: %v", err)
	}
	if res[4] != 4 || res[99] != 99 {
		t.Errorf("the successful results are not filled in: %v", res[:10])
	}
	if ag := p.Agents(); len(ag) != 2 || !ag[0].Match {
		t.Errorf("Agents = %+v", ag)
	}
}

func TestClosed(t *testing.T) {
	p := newPool(t, Agents(1))
	p.Close()
	if _, err := square.Map(context.Background(), p, ints(3)); !errors.Is(err, pool.ErrClosed) {
		t.Fatalf("Map after Close = %v, want pool.ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestUnknownTask(t *testing.T) {
	p := newPool(t, Agents(1))
	res := make(chan pool.ChunkResult, 1)
	c, err := p.StartCall(context.Background(), "ctest.nosuchtask", func(r pool.ChunkResult) { res <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(0, 1, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if !errors.Is(r.Err, pool.ErrNotRegistered) {
		t.Fatalf("result = %+v, want ErrNotRegistered", r)
	}
	// The agent goes on.
	if v, err := square.Apply(context.Background(), p, 3); err != nil || v != 9 {
		t.Fatalf("Apply afterwards = %d, %v", v, err)
	}
}

func TestWorkerDeathInAgent(t *testing.T) {
	p := newPool(t, Agents(1))
	ctx := context.Background()
	_, err := suicide.Apply(ctx, p, -1)
	var wd *pool.WorkerDiedError
	if !errors.As(err, &wd) || !errors.Is(err, pool.ErrWorkerDied) || wd.Pid == 0 {
		t.Fatalf("Apply = %v, want a *pool.WorkerDiedError", err)
	}
	if v, err := suicide.Apply(ctx, p, 4); err != nil || v != 4 {
		t.Fatalf("Apply after the death = %d, %v", v, err)
	}
}

func TestRetriesInAgent(t *testing.T) {
	p := newPool(t, Agents(1), Retries(2))
	_, err := suicide.Apply(context.Background(), p, -1)
	var wd *pool.WorkerDiedError
	if !errors.As(err, &wd) || wd.Attempts != 3 {
		t.Fatalf("Apply = %v, want a *pool.WorkerDiedError after 3 attempts", err)
	}
}

func TestTaskTimeoutKillsRemoteWorker(t *testing.T) {
	p := newPool(t, Agents(1), TaskTimeout(300*time.Millisecond))
	_, err := stubborn.Apply(context.Background(), p, time.Hour)
	var te *pool.TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Apply = %v, want a *pool.TimeoutError", err)
	}
}

func TestCancelReachesRemoteTasks(t *testing.T) {
	p := newPool(t)
	marks := []string{tmpFile(t, "a"), tmpFile(t, "b")}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once both tasks run.
		for p.runningChunks() < 2 {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	_, err := markCancel.Map(ctx, p, marks, pool.Chunksize(1))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Map = %v, want context.Canceled", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, m := range marks {
		for {
			if _, err := os.Stat(m); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the remote task's context did not end (%s missing)", m)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// runningChunks counts the chunks agents reported holding.
func (p *Pool) runningChunks() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.chunks {
		if s.claimant != "" {
			n++
		}
	}
	return n
}

func TestPoison(t *testing.T) {
	p := newPool(t, MaxDeliveries(1))
	_, err := killAgent.Apply(context.Background(), p, 1)
	var pe *PoisonError
	if !errors.As(err, &pe) || !errors.Is(err, ErrPoison) || pe.Task != "ctest.killagent" {
		t.Fatalf("Apply = %v, want a *PoisonError naming the task", err)
	}
}

// Closing the pool in the middle of a Map fails the Map's pending tasks
// with pool.ErrTerminated; nothing waits.
func TestCloseDuringMap(t *testing.T) {
	p := newPool(t, Agents(1))
	var once sync.Once
	_, err := slow.Map(context.Background(), p, []time.Duration{0, time.Hour, time.Hour, time.Hour}, pool.Chunksize(1),
		pool.OnProgress(func(pool.Progress) { once.Do(func() { go p.Close() }) }))
	if !errors.Is(err, pool.ErrTerminated) {
		t.Fatalf("Map = %v, want pool.ErrTerminated", err)
	}
}

// ImapUnordered yields results as they complete: one slow task does not
// hold back the others (Ray's imap blocks on one slow result, ray#29466).
func TestImapUnorderedSlowTaskDoesNotBlock(t *testing.T) {
	p := newPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := []time.Duration{time.Hour, 1, 2, 3, 4, 5}
	var got []time.Duration
	for v, err := range slow.ImapUnordered(ctx, p, slices.Values(in)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
		if len(got) == len(in)-1 {
			break // the hour-long task is still running; breaking cancels it
		}
	}
	slices.Sort(got)
	if d := cmp.Diff(in[1:], got); d != "" {
		t.Fatalf("ImapUnordered (-want +got):\n%s", d)
	}
}
