// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"sync"
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

func durations(n int, d time.Duration) []time.Duration {
	v := make([]time.Duration, n)
	for i := range v {
		v[i] = d + time.Duration(i)
	}
	return v
}

func checkDurations(t *testing.T, in, got []time.Duration) {
	t.Helper()
	for i := range in {
		if got[i] != in[i] {
			t.Fatalf("result %d = %v, want %v", i, got[i], in[i])
		}
	}
}

// startEnvAgent starts this test binary as a host agent, the way a host
// joins: the environment variable names the NATS URL.
func startEnvAgent(t *testing.T, url string, workers string) *exec.Cmd {
	t.Helper()
	cmd := envAgentCmd(t, url, workers)
	startCmd(t, cmd)
	return cmd
}

// startCmd starts an agent command, and stops it at the end of the test.
func startCmd(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
}

func envAgentCmd(t testing.TB, url string, workers string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), EnvCluster+"="+url, EnvWorkers+"="+workers, EnvLog+"=warn")
	cmd.Stderr = os.Stderr
	// A host agent outlives a lost server (it waits for it to come
	// back); the test's agents must not outlive the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func waitWorkers(t *testing.T, p *Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for p.Workers() < n || p.capacity() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d workers joined, want %d", p.capacity(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *Pool) capacity() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.capacityLocked()
}

// An agent SIGKILLed in the middle of a Map (with its workers): its
// chunks run on the other agent after the ack wait, and every result is
// right.
func TestAgentKilledMidMap(t *testing.T) {
	p := newPool(t, Agents(0))
	a := startEnvAgent(t, p.URL(), "2")
	b := startEnvAgent(t, p.URL(), "2")
	waitWorkers(t, p, 4)
	in := durations(40, 50*time.Millisecond)
	var once sync.Once
	got, err := slow.Map(context.Background(), p, in, pool.Chunksize(1), pool.OnProgress(func(pr pool.Progress) {
		if pr.Done >= 6 {
			once.Do(func() { a.Process.Kill() })
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	checkDurations(t, in, got)
	// The chunks the killed agent held were redelivered to the other one
	// (its status entry says so once refreshed, every third of the TTL,
	// 5s: a generous ceiling).
	deadline := time.Now().Add(60 * time.Second)
	for {
		var redelivered uint64
		for _, ag := range p.Agents() {
			if ag.Pid == b.Process.Pid {
				redelivered = ag.Redelivered
			}
		}
		if redelivered > 0 {
			t.Logf("chunks redelivered after the kill: %d", redelivered)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the surviving agent reports no redelivered chunk")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A caller that dies: agents drop its chunks and purge them from the
// stream, so storage does not keep them.
func TestCallerDeathDropsItsWork(t *testing.T) {
	p := newPool(t, Agents(1), CallerTTL(time.Second))
	cmd := mptest.HelperCmd(t, "doomed-caller", p.URL())
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
	cmd.Process.Kill()
	cmd.Wait()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := p.stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d chunks of the dead caller still in the stream", info.State.Msgs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v, err := square.Apply(ctx, p, 7); err != nil || v != 49 {
		t.Fatalf("Apply afterwards = %d, %v", v, err)
	}
}

var _ = mptest.RegisterHelper("doomed-caller", func() {
	url := mptest.HelperArgs()[0]
	p, err := New(context.Background(), URL(url), Agents(0))
	if err != nil {
		os.Exit(3)
	}
	in := durations(2000, time.Second)
	go slow.Map(context.Background(), p, in, pool.Chunksize(1))
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

// A chunk message deleted from the stream behind the pool's back (here
// purged with a plain nats.go client): the caller publishes it again and
// the call completes.
func TestLostMessageIsRepublished(t *testing.T) {
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
	in := durations(12, 100*time.Millisecond)
	var purged atomic.Bool
	got, err := slow.Map(context.Background(), p, in, pool.Chunksize(1), pool.OnProgress(func(pr pool.Progress) {
		if purged.Swap(true) {
			return
		}
		// The agent holds two chunks; the rest wait in the stream.
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
	if st := p.Stats(); st.Republished == 0 {
		t.Fatalf("nothing was republished: %+v", st)
	}
}

// Messages that are not chunks fail (or are dropped) and the agent goes
// on.
func TestUndecodableMessages(t *testing.T) {
	p := newPool(t, Agents(1))
	nc, err := nats.Connect(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	bad := [][]byte{
		{0xff, 0xff, 0xff},
		mustMarshal(&pb.Chunk{Caller: p.id, Job: 999, Id: 1 << 40, Task: "ctest.square", Count: 0}),
		mustMarshal(&pb.Chunk{Caller: "a.b", Job: 1, Id: 1, Task: "ctest.square", Count: 1}),
		mustMarshal(&pb.Chunk{Caller: p.id, Job: 999, Id: 1<<40 + 1, Task: "ctest.square", Count: 3, Inputs: []byte{1}}),
	}
	for i, b := range bad {
		if _, err := js.Publish(ctx, taskSubject(p.ns, p.id, 999, uint64(i)), b); err != nil {
			t.Fatal(err)
		}
	}
	got, err := square.Map(ctx, p, ints(50), pool.Chunksize(3))
	if err != nil || got[49] != 49*49 {
		t.Fatalf("Map after bad messages = %v, %v", got, err)
	}
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func FuzzDecodeChunk(f *testing.F) {
	f.Add(mustMarshal(&pb.Chunk{Caller: "abc", Job: 1, Id: 2, Task: "t", Count: 3, Inputs: []byte{1, 2, 3}}))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(mustMarshal(&pb.Chunk{Caller: "abc", Job: 1, Id: 2, Task: "t", Count: 3,
		InputsRef: &pb.ObjectRef{Name: inputsObject("abc", 1, 2), Size: 9 << 20, Digest: "SHA-256=x"}}))
	f.Add(mustMarshal(&pb.Chunk{Caller: "abc", Job: 1, Id: 2, Task: "t", Count: 3, InputsRef: &pb.ObjectRef{Name: "abc.1.3.in", Size: 1}}))
	f.Add(mustMarshal(&pb.Chunk{Caller: "abc", Job: 1, Id: 2, Task: "t", Count: 3,
		Parts: []*pb.Part{{Id: 2, Start: 0, Count: 1, Inputs: []byte{1}}, {Id: 3, Start: 1, Count: 2, Inputs: []byte{2, 3}}}}))
	f.Add(mustMarshal(&pb.Chunk{Caller: "abc", Job: 1, Id: 2, Task: "t", Count: 2,
		Parts: []*pb.Part{{Id: 2, Start: 5, Count: 1}, {Id: 3, Start: 5, Count: 1}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeChunk(b)
		if err != nil {
			if !errors.Is(err, errBadChunk) {
				t.Fatalf("error %v does not wrap errBadChunk", err)
			}
			return
		}
		if c.Count == 0 || c.Count > maxChunkTasks || !validToken(c.Caller) || c.Task == "" {
			t.Fatalf("accepted a bad chunk: %v", c)
		}
		if ref := c.InputsRef; ref != nil && (ref.Name != inputsObject(c.Caller, c.Job, c.Id) || ref.Size == 0 ||
			ref.Size > uint64(maxObjectSize) || len(c.Inputs) > 0) {
			t.Fatalf("accepted a bad inputs reference: %v", c)
		}
		next := uint64(0)
		for _, pt := range c.Parts {
			if pt.Id == 0 || pt.Count == 0 || uint64(pt.Start) < next || c.InputsRef != nil || len(c.Inputs) > 0 {
				t.Fatalf("accepted a bad pack: %v", c)
			}
			next = uint64(pt.Start) + uint64(pt.Count)
		}
		again, err := decodeChunk(mustMarshal(c))
		if err != nil || !proto.Equal(c, again) {
			t.Fatalf("round trip: %v, %v", again, err)
		}
	})
}

// A task that runs several ack waits long is not redelivered: its agent
// sends in-progress heartbeats while it runs, so it runs once.
func TestLongTaskHeartbeats(t *testing.T) {
	p := newPool(t, AckWait(time.Second))
	log := tmpFile(t, "runs")
	got, err := countRuns.Apply(context.Background(), p, runArg{Log: log, D: 3500 * time.Millisecond})
	if err != nil || got != 1 {
		t.Fatalf("Apply = %d, %v", got, err)
	}
	b, _ := os.ReadFile(log)
	if len(b) != 1 {
		t.Fatalf("the task started %d times, want once", len(b))
	}
}

type runArg struct {
	Log string
	D   time.Duration
}

// countRuns appends a byte to Log each time it starts, then sleeps D.
var countRuns = pool.Register("ctest.countruns", func(ctx context.Context, a runArg) (int, error) {
	f, err := os.OpenFile(a.Log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	f.Write([]byte{1})
	f.Close()
	select {
	case <-time.After(a.D):
		return 1, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
})

// Listen makes the embedded server reachable at Pool.URL; a host that
// joins there with the environment variable runs the calls.
func TestListenAndJoin(t *testing.T) {
	p := newPool(t, Agents(0), Listen("127.0.0.1:0"))
	if p.URL() == "" || p.emb.srv.Addr() == nil {
		t.Fatalf("URL = %q", p.URL())
	}
	startEnvAgent(t, p.URL(), "1")
	waitWorkers(t, p, 1)
	if v, err := square.Apply(context.Background(), p, 8); err != nil || v != 64 {
		t.Fatalf("Apply = %d, %v", v, err)
	}
}

// A local agent that dies is replaced, as a pool replaces a dead worker:
// a Map submitted after every local agent was killed still completes.
func TestLocalAgentReplaced(t *testing.T) {
	p := newPool(t, Agents(1))
	old := p.LocalAgentPids()
	if len(old) != 1 {
		t.Fatalf("LocalAgentPids = %v", old)
	}
	syscall.Kill(old[0], syscall.SIGKILL)
	got, err := square.Map(context.Background(), p, ints(100), pool.Chunksize(10))
	if err != nil || got[99] != 99*99 {
		t.Fatalf("Map after the agent's death = %v, %v", got, err)
	}
	if now := p.LocalAgentPids(); len(now) != 1 || now[0] == old[0] {
		t.Fatalf("LocalAgentPids = %v after %v died", now, old)
	}
}
