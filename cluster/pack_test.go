// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/pool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// killAgentAt returns x, except for a negative x: then it kills the agent
// that runs it (its worker's parent), with the agent's workers, after a
// pause that lets the agent answer the tasks that ran before it.
var killAgentAt = pool.Register("ctest.killagentat", func(ctx context.Context, x int) (int, error) {
	if x >= 0 {
		return x, nil
	}
	time.Sleep(300 * time.Millisecond)
	syscall.Kill(os.Getppid(), syscall.SIGKILL)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
})

// A Map of many one-task chunks travels in packs, and each chunk is still
// answered on its own: a task's error fails that task alone, a worker's
// death the task it ran alone, and every other result is in place.
func TestPackedMap(t *testing.T) {
	p := newPool(t)
	ctx := context.Background()
	got, err := fail.Map(ctx, p, ints(3000), pool.Chunksize(1))
	var re *pool.RemoteError
	if !errors.As(err, &re) || re.Index != 3 || re.Task != "ctest.fail" {
		t.Fatalf("Map = %v, want the error of task 3", err)
	}
	for i, v := range got {
		if want := i; i%10 != 3 && v != want {
			t.Fatalf("Map: result %d = %d, want %d", i, v, want)
		}
	}
	if st := p.Stats(); st.Packs == 0 {
		t.Fatalf("no pack was sent: %+v", st)
	}
	in := ints(2000)
	in[1500] = -1
	got, err = suicide.Map(ctx, p, in, pool.Chunksize(1))
	var wd *pool.WorkerDiedError
	if !errors.As(err, &wd) {
		t.Fatalf("Map with a worker's death at task 1500 = %v, want a *pool.WorkerDiedError", err)
	}
	for i, v := range got {
		if i != 1500 && v != in[i] {
			t.Fatalf("Map: result %d = %d, want %d", i, v, in[i])
		}
	}
}

// A task that kills every agent that runs it fails alone as poison, even
// though it traveled in a pack: the pack turns poison, and its chunks
// not answered yet are published again one by one.
func TestPackedPoison(t *testing.T) {
	p := newPool(t, Agents(1), MaxDeliveries(1))
	in := ints(128) // packs of 4 chunks with one agent of one worker
	in[127] = -1
	got, err := killAgentAt.Map(context.Background(), p, in, pool.Chunksize(1))
	var pe *PoisonError
	if !errors.As(err, &pe) || pe.Index != 127 || pe.Count != 1 {
		t.Fatalf("Map = %v, want a *PoisonError of task 127 alone", err)
	}
	for i, v := range got[:127] {
		if v != i {
			t.Fatalf("Map: result %d = %d, want %d", i, v, i)
		}
	}
	if st := p.Stats(); st.Packs == 0 || st.Republished == 0 {
		t.Fatalf("Stats = %+v: want packs sent, and chunks of the poison pack published again", st)
	}
}

// Packs deleted from the stream behind the pool's back are published
// again, chunk by chunk, and the Map completes.
func TestLostPackIsRepublished(t *testing.T) {
	p := newPool(t, Agents(1), RepublishAfter(500*time.Millisecond))
	nc, err := nats.Connect(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	in := durations(256, time.Millisecond)
	var purged atomic.Bool
	got, err := slow.Map(context.Background(), p, in, pool.Chunksize(1), pool.OnProgress(func(pr pool.Progress) {
		if purged.Swap(true) {
			return
		}
		s, err := js.Stream(context.Background(), streamName)
		if err == nil {
			err = s.Purge(context.Background())
		}
		if err != nil {
			t.Errorf("purge: %v", err)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	checkDurations(t, in, got)
	if st := p.Stats(); st.Packs == 0 || st.Republished == 0 {
		t.Fatalf("Stats = %+v: want packs sent and chunks published again", st)
	}
}
