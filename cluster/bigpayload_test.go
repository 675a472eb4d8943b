// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/pool"
	pb "github.com/multiproc/multiproc/proto/cluster/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// bigFlip returns its bytes reversed and xored with 0x5a: every output
// byte depends on the input's. A first byte of 0xff makes it sleep
// 300ms first, 0xfe 1.5s, so that an agent can be killed (or stopped)
// holding it, most likely while it runs.
var bigFlip = pool.Register("ctest.bigflip", func(ctx context.Context, b []byte) ([]byte, error) {
	var d time.Duration
	if len(b) > 0 && b[0] == 0xff {
		d = 300 * time.Millisecond
	} else if len(b) > 0 && b[0] == 0xfe {
		d = 1500 * time.Millisecond
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return flip(b), nil
})

// bigLen returns the length of its argument: only its inputs are big.
var bigLen = pool.Register("ctest.biglen", func(ctx context.Context, b []byte) (int, error) { return len(b), nil })

func flip(b []byte) []byte {
	out := make([]byte, len(b))
	for i, v := range b {
		out[len(b)-1-i] = v ^ 0x5a
	}
	return out
}

// bigInputs returns n payloads of size bytes, each different.
func bigInputs(n, size int, first byte) [][]byte {
	in := make([][]byte, n)
	for i := range in {
		b := make([]byte, size)
		x := uint32(i*7919 + 1)
		for j := range b {
			x = x*1664525 + 1013904223
			b[j] = byte(x >> 24)
		}
		b[0] = first
		in[i] = b
	}
	return in
}

func checkFlipped(t *testing.T, in, got [][]byte) {
	t.Helper()
	if len(got) != len(in) {
		t.Fatalf("%d results, want %d", len(got), len(in))
	}
	for i := range in {
		if !bytes.Equal(got[i], flip(in[i])) {
			t.Fatalf("result %d (%d bytes) is not its input flipped (%d bytes)", i, len(got[i]), len(in[i]))
		}
	}
}

// bigBucketState returns the big-payload bucket's stream state, nil when
// the bucket does not exist.
func bigBucketState(t *testing.T, p *Pool) *jetstream.StreamState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := p.js.Stream(ctx, "OBJ_"+bigBucket(p.ns))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &info.State
}

// waitObjectsGone checks that the big-payload bucket was used and that
// nothing is left in it (no object, no deletion mark): at once, or
// within a generous bound when removals may still be on their way.
func waitObjectsGone(t *testing.T, p *Pool, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		st := bigBucketState(t, p)
		if st == nil || st.LastSeq == 0 {
			t.Fatal("the big-payload bucket was never used")
		}
		if st.Msgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			obs, _, _ := p.big.open(context.Background(), false)
			var names []string
			if obs != nil {
				infos, _ := obs.List(context.Background(), jetstream.ListObjectsShowDeleted())
				for _, i := range infos {
					names = append(names, i.Name)
				}
			}
			t.Fatalf("the big-payload bucket still holds %d messages (%d bytes), objects %q", st.Msgs, st.Bytes, names)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Chunks and results over the server's maximum message size (1 MiB by
// default) travel through the Object Store: a Map over 8 MiB arguments
// returning 8 MiB results gets every byte back, and leaves no object.
func TestBigPayloads(t *testing.T) {
	p := newPool(t)
	if mp := p.nc.MaxPayload(); mp != 1<<20 {
		t.Fatalf("the embedded server's max_payload is %d, want the default 1 MiB", mp)
	}
	ctx := context.Background()
	in := bigInputs(4, 8<<20, 0)
	got, err := bigFlip.Map(ctx, p, in)
	if err != nil {
		t.Fatal(err)
	}
	checkFlipped(t, in, got)
	// Removed before their results were delivered.
	waitObjectsGone(t, p, 0)

	// A small argument with a big result (the result only), and Apply.
	s, err := pool.Starmap(ctx, p, concat, []pool.Args2[string, int]{{A: "0123456789abcdef", B: 3 << 16}, {A: "x", B: 2}})
	if err != nil || len(s) != 2 || s[0] != strings.Repeat("0123456789abcdef", 3<<16) || s[1] != "xx" {
		t.Fatalf("Starmap with a 3 MiB result: %d results, %v", len(s), err)
	}
	one, err := bigFlip.Apply(ctx, p, in[0])
	if err != nil || !bytes.Equal(one, flip(in[0])) {
		t.Fatalf("Apply of 8 MiB: %d bytes, %v", len(one), err)
	}
	waitObjectsGone(t, p, 0)
}

// An agent SIGKILLed in the middle of a Map of big chunks (reading,
// running or answering one): the chunk it held is delivered again, its
// inputs' object is still there, the Map completes byte for byte, and
// no object is left.
func TestBigPayloadAgentKilled(t *testing.T) {
	p := newPool(t, Agents(0))
	a := startEnvAgent(t, p.URL(), "1")
	b := startEnvAgent(t, p.URL(), "1")
	waitWorkers(t, p, 2)
	in := bigInputs(6, 8<<20, 0xff)
	var killed atomic.Bool
	go func() {
		// Kill a once it holds a chunk.
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if p.heldBy(a.Process.Pid) {
				a.Process.Kill()
				killed.Store(true)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	got, err := bigFlip.Map(context.Background(), p, in, pool.Chunksize(1))
	if err != nil {
		t.Fatal(err)
	}
	checkFlipped(t, in, got)
	if !killed.Load() {
		t.Fatal("the agent was never seen holding a chunk")
	}
	waitObjectsGone(t, p, 30*time.Second)
	// Its status entry says so once refreshed (every third of the TTL,
	// 5s): a generous ceiling.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var redelivered uint64
		for _, ag := range p.Agents() {
			if ag.Pid == b.Process.Pid {
				redelivered = ag.Redelivered
			}
		}
		if redelivered > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the surviving agent reports no redelivered chunk")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The only agent SIGKILLed while it reads a chunk's inputs object (the
// bucket's stream has a consumer: the agent's read; the caller reads
// none, the results being small): the chunk is delivered again to an
// agent started after the kill, its object still there, and the Map
// completes.
func TestBigPayloadAgentKilledReading(t *testing.T) {
	p := newPool(t, Agents(0))
	a := startEnvAgent(t, p.URL(), "1")
	waitWorkers(t, p, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	killed := make(chan error, 1)
	go func() {
		name := "OBJ_" + bigBucket(p.ns)
		for ctx.Err() == nil {
			st, err := p.js.Stream(ctx, name)
			if err == nil && st.CachedInfo().State.Consumers > 0 {
				a.Process.Kill()
				killed <- nil
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		killed <- errors.New("the agent was never seen reading an object")
	}()
	type res struct {
		n   []int
		err error
	}
	done := make(chan res, 1)
	in := bigInputs(2, 32<<20, 0)
	go func() {
		n, err := bigLen.Map(ctx, p, in, pool.Chunksize(1))
		done <- res{n, err}
	}()
	if err := <-killed; err != nil {
		t.Fatal(err)
	}
	startEnvAgent(t, p.URL(), "1")
	r := <-done
	if r.err != nil || len(r.n) != 2 || r.n[0] != 32<<20 || r.n[1] != 32<<20 {
		t.Fatalf("Map = %v, %v", r.n, r.err)
	}
	waitObjectsGone(t, p, 30*time.Second)
}

// heldBy reports whether the agent process pid claims a chunk.
func (p *Pool) heldBy(pid int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.chunks {
		for _, a := range p.agents {
			if a.info.Pid == pid && a.info.ID == s.claimant {
				return true
			}
		}
	}
	return false
}

// An inputs object removed, or replaced, behind the pool's back, and a
// message naming an object that is not its own: each fails its chunk
// with a clear error (ErrPayloadLost; a malformed chunk), not run on
// other bytes, and the agent goes on.
func TestBigPayloadLostObject(t *testing.T) {
	p := newPool(t, Agents(0))
	ctx := context.Background()
	nc, err := nats.Connect(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	results := make(chan pool.ChunkResult, 2)
	c, err := p.StartCall(ctx, "ctest.bigflip", func(r pool.ChunkResult) { results <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	inputs := make([]byte, 2<<20)
	for i := range 2 {
		if err := c.Send(i, 1, inputs); err != nil {
			t.Fatal(err)
		}
	}
	p.mu.Lock()
	var objects []string
	for id := range p.chunks {
		objects = append(objects, p.chunks[id].object)
	}
	p.mu.Unlock()
	if len(objects) != 2 || objects[0] == "" || objects[1] == "" {
		t.Fatalf("the chunks' objects: %q", objects)
	}
	obs, err := js.ObjectStore(ctx, bigBucket(p.ns))
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Delete(ctx, objects[0]); err != nil {
		t.Fatal(err)
	}
	other := bytes.Repeat([]byte{7}, len(inputs))
	if _, err := obs.PutBytes(ctx, objects[1], other); err != nil {
		t.Fatal(err)
	}
	// And a message whose reference names another caller's object.
	bad := mustMarshal(&pb.Chunk{Caller: p.id, Job: 999, Id: 1 << 40, Task: "ctest.bigflip", Count: 1,
		InputsRef: &pb.ObjectRef{Name: objects[0] + "x", Size: 5}})
	if _, err := js.Publish(ctx, taskSubject(p.ns, p.id, 999, 1<<40), bad); err != nil {
		t.Fatal(err)
	}

	startEnvAgent(t, p.URL(), "1")
	for range 2 {
		r := <-results
		if !errors.Is(r.Err, ErrPayloadLost) || !strings.Contains(r.Err.Error(), "ctest.bigflip") {
			t.Fatalf("result = %+v, want ErrPayloadLost naming the task", r)
		}
		t.Logf("%v", r.Err)
	}
	// The agent goes on.
	in := bigInputs(2, 2<<20, 0)
	got, err := bigFlip.Map(ctx, p, in)
	if err != nil {
		t.Fatal(err)
	}
	checkFlipped(t, in, got)
	waitObjectsGone(t, p, 0)
}

// What remains of ErrTooLarge: a payload the object store does not take
// (here the bucket's MaxBytes, StreamLimits, is 6 MiB) fails its
// chunk at once with a clear error instead of being retried forever.
func TestBigPayloadRefused(t *testing.T) {
	p := newPool(t, Agents(1), StreamLimits(time.Hour, 6<<20))
	ctx := context.Background()
	_, err := bigFlip.Map(ctx, p, bigInputs(1, 8<<20, 0))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Map of an 8 MiB argument over a 6 MiB bucket = %v, want ErrTooLarge", err)
	}
	_, err = pool.Starmap(ctx, p, concat, []pool.Args2[string, int]{{A: string(make([]byte, 1<<10)), B: 8 << 10}})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Starmap with an 8 MiB result over a 6 MiB bucket = %v, want ErrTooLarge", err)
	}
	t.Logf("%v", err)
	// Payloads it takes still pass.
	in := bigInputs(1, 2<<20, 0)
	got, err := bigFlip.Map(ctx, p, in)
	if err != nil {
		t.Fatal(err)
	}
	checkFlipped(t, in, got)
	if st := bigBucketState(t, p); st == nil || st.Msgs != 0 {
		t.Fatalf("the bucket after refused puts: %+v", st)
	}
}

// A caller that dies with big chunks queued: the agents remove its
// objects when they purge its chunks, so storage does not keep them.
func TestBigPayloadCallerDeath(t *testing.T) {
	p := newPool(t, Agents(1), CallerTTL(time.Second))
	cmd := mptest.HelperCmd(t, "doomed-big-caller", p.URL())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil {
		t.Fatalf("the caller did not start its Map: %v", err)
	}
	if st := bigBucketState(t, p); st == nil || st.Msgs == 0 {
		t.Fatalf("the dead caller's objects are not in the bucket: %+v", st)
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitObjectsGone(t, p, 30*time.Second)
	in := bigInputs(1, 2<<20, 0)
	got, err := bigFlip.Map(context.Background(), p, in)
	if err != nil {
		t.Fatal(err)
	}
	checkFlipped(t, in, got)
}

var _ = mptest.RegisterHelper("doomed-big-caller", func() {
	url := mptest.HelperArgs()[0]
	p, err := New(context.Background(), URL(url), Agents(0))
	if err != nil {
		os.Exit(3)
	}
	in := bigInputs(4, 2<<20, 0xff)
	go bigFlip.Map(context.Background(), p, in, pool.Chunksize(1))
	for {
		p.mu.Lock()
		n := len(p.chunks)
		p.mu.Unlock()
		if n == len(in) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.nc.Flush()
	os.Stdout.Write([]byte("ready"))
	select {} // until killed
})

func TestCheckRefs(t *testing.T) {
	ok := &pb.ObjectRef{Name: inputsObject("abc", 1, 2), Size: 10, Digest: "SHA-256=x"}
	tests := []struct {
		name string
		c    *pb.Chunk
		ok   bool
	}{
		{"none", &pb.Chunk{Caller: "abc", Job: 1, Id: 2}, true},
		{"its own", &pb.Chunk{Caller: "abc", Job: 1, Id: 2, InputsRef: ok}, true},
		{"another chunk's", &pb.Chunk{Caller: "abc", Job: 1, Id: 3, InputsRef: ok}, false},
		{"inline too", &pb.Chunk{Caller: "abc", Job: 1, Id: 2, Inputs: []byte{1}, InputsRef: ok}, false},
		{"empty", &pb.Chunk{Caller: "abc", Job: 1, Id: 2, InputsRef: &pb.ObjectRef{Name: ok.Name}}, false},
		{"too big", &pb.Chunk{Caller: "abc", Job: 1, Id: 2, InputsRef: &pb.ObjectRef{Name: ok.Name, Size: 1 << 40}}, false},
		{"long digest", &pb.Chunk{Caller: "abc", Job: 1, Id: 2, InputsRef: &pb.ObjectRef{Name: ok.Name, Size: 1, Digest: strings.Repeat("d", 200)}}, false},
	}
	for _, tt := range tests {
		err := checkInputsRef(tt.c)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, errBadChunk)) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	r := &pb.Result{Job: 1, Id: 2, Agent: "ag", OutputsRef: &pb.ObjectRef{Name: outputsObject("abc", 1, 2, "ag"), Size: 3}}
	if err := checkOutputsRef(r, "abc"); err != nil {
		t.Errorf("a result's own outputs: %v", err)
	}
	if err := checkOutputsRef(r, "abd"); err == nil {
		t.Error("another caller's outputs accepted")
	}
	r.Agent = "a.b"
	if err := checkOutputsRef(r, "abc"); err == nil {
		t.Error("a bad agent id accepted")
	}
}

// FuzzResultRef: a result message as a caller decodes it; an accepted
// outputs reference names this caller's object for that chunk.
func FuzzResultRef(f *testing.F) {
	f.Add(mustMarshal(&pb.ToCaller{Msg: &pb.ToCaller_Result{Result: &pb.Result{Job: 1, Id: 2, Agent: "ag",
		OutputsRef: &pb.ObjectRef{Name: outputsObject("abc", 1, 2, "ag"), Size: 3, Digest: "SHA-256=x"}}}}))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x3a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		var tc pb.ToCaller
		if proto.Unmarshal(b, &tc) != nil {
			return
		}
		r := tc.GetResult()
		if err := checkOutputsRef(r, "abc"); err != nil {
			if !errors.Is(err, errBadChunk) {
				t.Fatalf("error %v does not wrap errBadChunk", err)
			}
			return
		}
		if ref := r.GetOutputsRef(); ref != nil {
			if ref.Name != outputsObject("abc", r.Job, r.Id, r.Agent) || ref.Size == 0 || ref.Size > uint64(maxObjectSize) || len(r.Outputs) > 0 {
				t.Fatalf("accepted a bad reference: %v", r)
			}
		}
	})
}

// A pool closed in the middle of a Map of big chunks, on a deployment
// that outlives it (URL): Close removes its objects. No agent runs here,
// so nothing else would.
func TestBigPayloadClose(t *testing.T) {
	p := newPool(t, Agents(0))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q, err := New(ctx, URL(p.URL()), Agents(0))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	done := make(chan error, 1)
	go func() {
		_, err := bigFlip.Map(ctx, q, bigInputs(4, 2<<20, 0), pool.Chunksize(1))
		done <- err
	}()
	for {
		q.mu.Lock()
		n := len(q.chunks)
		q.mu.Unlock()
		if n == 4 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the Map did not start: %d chunks", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := bigBucketState(t, p); st == nil || st.Msgs == 0 {
		t.Fatalf("the chunks' objects are not in the bucket: %+v", st)
	}
	q.Close()
	if err := <-done; !errors.Is(err, pool.ErrTerminated) {
		t.Fatalf("Map on a closed pool = %v, want pool.ErrTerminated", err)
	}
	waitObjectsGone(t, p, 0)
}

// The big-payload bucket deleted behind the pool's back (an operator's
// `nats object rm`) between two Maps: the next put creates it again and
// the next big Map completes.
func TestBigPayloadBucketDeleted(t *testing.T) {
	p := newPool(t, Agents(1))
	ctx := context.Background()
	in := bigInputs(2, 2<<20, 0)
	for round := range 2 {
		got, err := bigFlip.Map(ctx, p, in)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		checkFlipped(t, in, got)
		waitObjectsGone(t, p, 0)
		if round == 0 {
			nc, err := nats.Connect(p.URL())
			if err != nil {
				t.Fatal(err)
			}
			js, _ := jetstream.New(nc)
			err = js.DeleteObjectStore(ctx, bigBucket(p.ns))
			nc.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

type onceArg struct {
	Mark string
	Data []byte
}

// bigOnce kills its own worker the first time it runs for a Mark (it
// creates the file Mark first), and returns its Data flipped after.
var bigOnce = pool.Register("ctest.bigonce", func(ctx context.Context, a onceArg) ([]byte, error) {
	f, err := os.OpenFile(a.Mark, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		f.Close()
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	return flip(a.Data), nil
})

// Retries hold for big chunks: a worker that dies running one inside the
// agent is replaced and the task runs again on the inputs the agent
// read, once; the results come back byte for byte.
func TestBigPayloadRetries(t *testing.T) {
	p := newPool(t, Agents(1), Retries(1))
	in := bigInputs(2, 2<<20, 0)
	args := []onceArg{{Mark: tmpFile(t, "a"), Data: in[0]}, {Mark: tmpFile(t, "b"), Data: in[1]}}
	got, err := bigOnce.Map(context.Background(), p, args, pool.Chunksize(1))
	if err != nil {
		t.Fatal(err)
	}
	checkFlipped(t, in, got)
	waitObjectsGone(t, p, 0)
}

// Dedupe holds for big results: an agent stopped (SIGSTOP) holding a big
// chunk past the ack wait, the chunk runs on the other agent and the Map
// completes; the stopped agent, continued, answers too: its result is
// dropped as a duplicate and its outputs object removed.
func TestBigPayloadDuplicateResult(t *testing.T) {
	p := newPool(t, Agents(0))
	a := startEnvAgent(t, p.URL(), "1")
	startEnvAgent(t, p.URL(), "1")
	waitWorkers(t, p, 2)
	in := bigInputs(2, 2<<20, 0xfe)
	stopped := make(chan bool, 1)
	go func() {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if p.heldBy(a.Process.Pid) {
				a.Process.Signal(syscall.SIGSTOP)
				stopped <- true
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		stopped <- false
	}()
	got, err := bigFlip.Map(context.Background(), p, in, pool.Chunksize(1))
	ok := <-stopped
	a.Process.Signal(syscall.SIGCONT)
	if err != nil {
		t.Fatal(err)
	}
	checkFlipped(t, in, got)
	if !ok {
		t.Fatal("the agent was never seen holding a chunk")
	}
	// Stopped while it read the object, the agent finds it removed
	// (the chunk was answered) only once its read's bound has passed.
	deadline := time.Now().Add(60 * time.Second)
	for p.Stats().Duplicates == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the continued agent's result never came: %+v", p.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitObjectsGone(t, p, 30*time.Second)
}
