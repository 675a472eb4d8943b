// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/process"
	pb "github.com/multiproc/multiproc/proto/cluster/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// Pool runs registered pool tasks on agents across hosts, through NATS
// JetStream. It is a pool.Runner: every Task call (Map, Imap,
// ImapUnordered, Starmap, Apply, Submit, ApplyAsync) takes it in place of
// a *pool.Pool. All methods are safe for concurrent use.
type Pool struct {
	o   options
	log *zap.Logger
	id  string // this caller's id
	ns  string

	emb    *embedded // nil with URL
	url    string    // what agents connect to
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	kv     jetstream.KeyValue
	sub    *nats.Subscription
	ttl    time.Duration
	big    *bigStore // chunks and results over the maximum message size

	slots chan struct{} // MaxInFlight

	mu       sync.Mutex
	closed   bool
	calls    map[uint64]*call
	chunks   map[uint64]*sent // submitted and not answered, by chunk id
	jobSeq   uint64
	chunkSeq uint64
	agents   map[string]*agentSeen // by status key
	warned   map[string]bool
	// warnedIdle: a call was started with no agent of this build.
	warnedIdle bool
	local      []*process.Process

	stats struct {
		republished, duplicates, results, packs uint64
	}

	// life ends when the pool starts shutting down; stop ends it.
	life context.Context
	stop context.CancelFunc
	done chan struct{}
	wg   sync.WaitGroup
}

type agentSeen struct {
	info AgentInfo
	seen time.Time
}

// sent is a chunk submitted and not yet answered.
type sent struct {
	c        *call
	id       uint64
	start, n int
	subject  string
	data     []byte
	gen      int       // how many times it was published again
	last     time.Time // when the cluster last showed it is not lost
	pubErrs  int
	claimant string
	object   string // its inputs' object in the big-payload bucket, or ""
	reading  bool   // its result is in and being read (bigResult)
	// pack is set while it travels in a pack (pack.go), with inputs.
	pack   *packOf
	inputs []byte
}

// New starts a cluster pool. With no URL option it starts an embedded
// nats-server with JetStream (its store in a private temporary directory,
// removed by Close) and process.CPUCount() local agents as child
// processes, so the pool works on one machine out of the box; Listen lets
// agents on other hosts join. With URL it uses an existing NATS
// deployment. New waits until the local agents are ready; ctx bounds
// that.
//
// Every program that uses a cluster pool must call process.Init() first
// thing in main: local agents, their workers and agents on other hosts
// are this same binary.
func New(ctx context.Context, opts ...Option) (*Pool, error) {
	o := defaults()
	for _, f := range opts {
		if err := f(&o); err != nil {
			return nil, err
		}
	}
	if !o.agentsSet && o.url == "" {
		o.agents = process.CPUCount()
	}
	p := &Pool{o: o, log: o.log.Named("cluster"), id: strings.ToLower(nuid.Next()), ns: namespace(),
		calls: map[uint64]*call{}, chunks: map[uint64]*sent{}, agents: map[string]*agentSeen{}, warned: map[string]bool{},
		slots: make(chan struct{}, o.maxInFlight), done: make(chan struct{})}
	if err := p.start(ctx); err != nil {
		p.shutdown()
		return nil, err
	}
	return p, nil
}

func (p *Pool) start(ctx context.Context) error {
	o := &p.o
	p.url = o.url
	copts, err := connectOptions("multiproc-cluster-caller", o.creds, newErrLog(p.log))
	if err != nil {
		return err
	}
	if o.url == "" {
		emb, err := startEmbedded(o, p.log)
		if err != nil {
			return err
		}
		p.emb, p.url = emb, emb.url
		copts = append(copts, nats.InProcessServer(emb.srv))
	}
	nc, err := nats.Connect(p.url, copts...)
	if err != nil {
		return fmt.Errorf("cluster: connecting to %s: %w", p.url, err)
	}
	p.nc = nc
	p.js, err = jetstream.New(nc, jetstream.WithPublishAsyncErrHandler(p.onPublishError),
		jetstream.WithPublishAsyncMaxPending(o.maxInFlight+64),
		jetstream.WithPublishAsyncTimeout(publishAckTimeout(o.republish)))
	if err != nil {
		return err
	}
	if o.replicas == 0 {
		o.replicas = autoReplicas(nc)
	}
	p.big = newBigStore(p.js, p.ns, o, p.emb != nil)
	if err := retryUnanswered(ctx, p.log, p.setupJetStream); err != nil {
		return err
	}
	p.sub, err = nc.Subscribe(resultSubject(p.id), p.onMessage)
	if err != nil {
		return err
	}
	p.sub.SetPendingLimits(-1, 256<<20)
	bg, stop := context.WithCancel(context.Background())
	p.stop, p.life = stop, bg
	watcher, err := p.kv.Watch(bg, "agent.>")
	if err != nil {
		return fmt.Errorf("cluster: watching the agents: %w", err)
	}
	p.wg.Add(3)
	go p.watchAgents(bg, watcher)
	go p.heartbeatLoop(bg)
	go p.trackLoop(bg)
	return p.startLocalAgents(ctx)
}

// setupJetStream creates or opens the stream, the agents' consumer and
// the status bucket, and puts the first heartbeat.
func (p *Pool) setupJetStream(ctx context.Context) error {
	o := &p.o
	var err error
	if p.stream, err = ensureStream(ctx, p.js, o, p.emb != nil); err != nil {
		return err
	}
	if _, err := p.js.CreateOrUpdateConsumer(ctx, streamName, consumerConfig(p.ns, o.ackWait)); err != nil {
		return fmt.Errorf("cluster: creating the agents' consumer: %w", err)
	}
	if p.kv, p.ttl, err = ensureStatus(ctx, p.js, o.callerTTL, o.replicas, p.emb != nil); err != nil {
		return err
	}
	return p.heartbeat(ctx)
}

// retryUnanswered runs f with attempts of at most 5s while its requests
// go unanswered (a NATS cluster electing its JetStream leader drops
// them), until ctx ends; any other error is returned at once.
func retryUnanswered(ctx context.Context, log *zap.Logger, f func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders)) {
			return err
		}
		log.Warn("JetStream does not answer yet (a cluster electing its leader?); retrying", zap.Error(err))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Workers returns how many tasks the live agents of this build run at
// once (at least 1): Map's default chunksize and Imap's read-ahead
// follow from it.
func (p *Pool) Workers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.capacityLocked(), 1)
}

func (p *Pool) capacityLocked() int {
	n := 0
	for _, a := range p.agents {
		if a.info.Build == p.ns && time.Since(a.seen) < p.ttl {
			n += a.info.Capacity
		}
	}
	return n
}

// URL returns the NATS URL agents connect to: the embedded server's, or
// the one given with URL.
func (p *Pool) URL() string { return p.url }

// Agents returns the live agents, of this build and of others (Match
// false: they never receive this program's tasks).
func (p *Pool) Agents() []AgentInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []AgentInfo
	for _, a := range p.agents {
		if time.Since(a.seen) < p.ttl {
			info := a.info
			info.Match = info.Build == p.ns
			out = append(out, info)
		}
	}
	return out
}

// Stats counts what the completeness machinery did.
type Stats struct {
	Results     uint64 // chunk results accepted
	Duplicates  uint64 // results dropped because their chunk was already answered
	Republished uint64 // chunks published again because their message was lost
	// Packs counts the messages that carried several chunks of a call
	// (pack.go).
	Packs uint64
}

// Stats returns the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Results: p.stats.results, Duplicates: p.stats.duplicates, Republished: p.stats.republished, Packs: p.stats.packs}
}

// StartCall implements pool.Runner.
func (p *Pool) StartCall(ctx context.Context, task string, deliver func(pool.ChunkResult)) (pool.Call, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, pool.ErrClosed
	}
	if p.capacityLocked() == 0 && !p.warnedIdle {
		p.warnedIdle = true
		p.log.Warn("no agent of this build is connected: calls wait until one joins (their context bounds them)",
			zap.String("build", p.ns), zap.String("url", p.url))
	}
	p.jobSeq++
	c := &call{p: p, job: p.jobSeq, task: task, ctx: ctx, deliver: deliver, sent: map[uint64]*sent{}}
	p.calls[c.job] = c
	return c, nil
}

// call is one call (a pool job) on the cluster.
type call struct {
	p       *Pool
	job     uint64
	task    string
	ctx     context.Context
	deliver func(pool.ChunkResult)
	sent    map[uint64]*sent // under p.mu
	ended   bool             // under p.mu
}

// stoppedLocked reports whether c's chunks must no longer be sent, because
// the pool closed (pool.ErrClosed) or the call ended (its context's
// error, nil when it ended with its results). Called with p.mu held.
func (p *Pool) stoppedLocked(c *call) (bool, error) {
	switch {
	case p.closed:
		return true, pool.ErrClosed
	case c.ended:
		return true, c.ctx.Err()
	}
	return false, nil
}

// Send publishes a chunk; it waits while MaxInFlight chunks are out.
func (c *call) Send(start, n int, inputs []byte) error {
	p := c.p
	select {
	case p.slots <- struct{}{}:
	case <-c.ctx.Done():
		return c.ctx.Err()
	case <-p.done:
		return pool.ErrClosed
	}
	p.mu.Lock()
	if stop, err := p.stoppedLocked(c); stop {
		p.mu.Unlock()
		<-p.slots
		return err
	}
	p.chunkSeq++
	id := p.chunkSeq
	p.mu.Unlock()
	data, object, err := p.encodeChunk(c.ctx, c.chunkMsg(id, start, n, inputs))
	if err != nil {
		<-p.slots
		return err
	}
	s := &sent{c: c, id: id, start: start, n: n, subject: taskSubject(p.ns, p.id, c.job, id), data: data, last: time.Now(), object: object}
	p.mu.Lock()
	if stop, err := p.stoppedLocked(c); stop {
		p.mu.Unlock()
		<-p.slots
		p.removeObjects(object)
		return err
	}
	p.chunks[id] = s
	c.sent[id] = s
	p.mu.Unlock()
	p.publish(s)
	return nil
}

// publish publishes a chunk's message (or its pack's). Called without
// p.mu, under which it reads what unpacking or republishing changes.
func (p *Pool) publish(s *sent) {
	p.mu.Lock()
	subject, data, msgID := s.subject, s.data, p.id+"."+u64(s.id)+"."+strconv.Itoa(s.gen)
	p.mu.Unlock()
	_, err := p.js.PublishAsync(subject, data, jetstream.WithMsgID(msgID))
	if err != nil {
		// Too many publishes waiting for their acknowledgement, or the
		// connection is down: the tracker publishes it again.
		p.log.Debug("publish failed; the tracker retries", zap.Uint64("chunk", s.id), zap.Error(err))
		p.publishFailed(s.id, err)
	}
}

// maxPublishErrors is how many refused publishes in a row fail a chunk.
const maxPublishErrors = 10

// publishFailed marks a chunk whose publish failed for the tracker, or
// fails it after maxPublishErrors.
func (p *Pool) publishFailed(id uint64, err error) {
	p.mu.Lock()
	them := []*sent{p.chunks[id]}
	if s := them[0]; s != nil && s.pack != nil && s.pack.first == id {
		them = s.pack.parts // the message of a pack: each of its chunks
	}
	var fail []*sent
	for _, s := range them {
		if s == nil || p.chunks[s.id] != s {
			continue
		}
		s.pubErrs++
		s.last = time.Time{}
		if s.pubErrs > maxPublishErrors {
			fail = append(fail, s)
			p.removeLocked(s)
		}
	}
	p.mu.Unlock()
	for _, f := range fail {
		p.removeObjects(f.object)
		f.c.deliver(pool.ChunkResult{Start: f.start, N: f.n,
			Err: fmt.Errorf("cluster: publishing task %s[%d..%d] failed %d times: %w", f.c.task, f.start, f.start+f.n-1, f.pubErrs, err)})
	}
}

// onPublishError marks a chunk whose publish was refused, or whose
// acknowledgement did not come within publishAckTimeout (the server
// that had it was killed, the connection stalled), for the tracker,
// which publishes it again at its next round rather than after
// RepublishAfter.
func (p *Pool) onPublishError(_ jetstream.JetStream, m *nats.Msg, err error) {
	id, ok := chunkOfMsgID(m.Header.Get(jetstream.MsgIDHeader))
	if !ok {
		return
	}
	p.log.Debug("publish refused or not acknowledged; retrying", zap.Uint64("chunk", id), zap.Error(err))
	if errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
		// nats.go calls this under its publisher's lock: what
		// publishFailed may set off (a chunk's failure delivered, a call
		// sending more) must not publish on this goroutine.
		go p.publishFailed(id, err)
		return
	}
	p.publishFailed(id, err)
}

// publishAckTimeout is how long the caller waits for the acknowledgement
// of a chunk's publish before publishing it again (under the same chunk
// id): a tenth of RepublishAfter, between 1s and 5s (3s by default).
// Without it, a publish in flight when its server is killed may never be
// answered, and its chunk would wait for RepublishAfter.
func publishAckTimeout(republish time.Duration) time.Duration {
	return min(max(republish/10, time.Second), 5*time.Second)
}

func chunkOfMsgID(s string) (uint64, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return 0, false
	}
	id, err := strconv.ParseUint(parts[1], 10, 64)
	return id, err == nil
}

// removeLocked forgets an answered (or failed) chunk. Called with p.mu.
func (p *Pool) removeLocked(s *sent) {
	if p.chunks[s.id] != s {
		return
	}
	delete(p.chunks, s.id)
	delete(s.c.sent, s.id)
	<-p.slots
}

// Close ends the call: its chunks still in the stream are purged and the
// agents running its tasks are told to cancel them.
func (c *call) Close() {
	p := c.p
	p.mu.Lock()
	if c.ended {
		p.mu.Unlock()
		return
	}
	c.ended = true
	delete(p.calls, c.job)
	pending := len(c.sent) > 0
	var objects []string
	for _, s := range c.sent {
		p.removeLocked(s)
		if s.object != "" {
			objects = append(objects, s.object)
		}
	}
	closed := p.closed
	p.mu.Unlock()
	if !closed {
		p.removeObjects(objects...)
	}
	if pending && !closed {
		p.cancelRemote(c.job)
	}
}

// cancelRemote tells the agents to cancel a job and purges its chunks.
func (p *Pool) cancelRemote(job uint64) {
	b, _ := proto.Marshal(&pb.Cancel{Caller: p.id, Job: job})
	if err := p.nc.Publish(controlSubject(p.ns), b); err != nil {
		p.log.Debug("cannot send a cancel", zap.Error(err))
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.stream.Purge(ctx, jetstream.WithPurgeSubject(jobSubjects(p.ns, p.id, job))); err != nil {
			p.log.Debug("cannot purge a cancelled job", zap.Error(err))
		}
	}()
}

// onMessage handles what agents send on this caller's subject.
func (p *Pool) onMessage(m *nats.Msg) {
	var tc pb.ToCaller
	if err := proto.Unmarshal(m.Data, &tc); err != nil {
		p.log.Warn("undecodable message on the results subject", zap.Error(err))
		return
	}
	switch x := tc.Msg.(type) {
	case *pb.ToCaller_Claim:
		now := time.Now()
		p.mu.Lock()
		for _, id := range x.Claim.GetIds() {
			if s := p.chunks[id]; s != nil {
				s.last, s.claimant = now, x.Claim.GetAgent()
			}
		}
		p.mu.Unlock()
	case *pb.ToCaller_Result:
		p.onResult(x.Result)
	}
}

func (p *Pool) onResult(r *pb.Result) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	s := p.chunks[r.GetId()]
	if s != nil && s.pack != nil && r.GetAll() != nil && s.c.job == r.GetJob() && !s.reading {
		p.mu.Unlock()
		if p.poisonPart(s, r) {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		s = p.chunks[r.GetId()]
	}
	if s == nil || s.c.job != r.GetJob() || s.reading {
		p.stats.duplicates++
		p.mu.Unlock()
		if r.GetOutputsRef() != nil && checkOutputsRef(r, p.id) == nil {
			p.removeObjects(r.GetOutputsRef().GetName())
		}
		return
	}
	if s.object != "" || r.GetOutputsRef() != nil {
		// Objects to read or remove: not on the subscription's goroutine.
		s.reading = true
		p.wg.Add(1)
		p.mu.Unlock()
		go p.bigResult(s, r)
		return
	}
	p.removeLocked(s)
	p.stats.results++
	p.mu.Unlock()
	cr := pool.ChunkResult{Start: s.start, N: s.n, Outputs: r.GetOutputs()}
	p.fillFailures(&cr, s, r)
	s.c.deliver(cr)
}

// fillFailures sets a chunk result's errors from its Result message.
func (p *Pool) fillFailures(cr *pool.ChunkResult, s *sent, r *pb.Result) {
	task := s.c.task
	if a := r.GetAll(); a != nil {
		cr.Err = errorOf(task, s.start, a, r.GetAgent())
	}
	for _, f := range r.GetFailures() {
		if int(f.GetIndex()) < s.n {
			cr.Failed = append(cr.Failed, pool.Failure{Index: int(f.GetIndex()), Err: errorOf(task, s.start, f, r.GetAgent())})
		}
	}
}

// heartbeat records this caller as alive in the status bucket: agents
// drop the chunks of callers whose entry is gone.
func (p *Pool) heartbeat(ctx context.Context) error {
	host, _ := os.Hostname()
	b, _ := json.Marshal(map[string]any{"host": host, "pid": os.Getpid(), "build": p.ns})
	if err := putStatus(ctx, p.js, p.kv, callerKey(p.ns, p.id), b, p.ttl, p.o.replicas, p.log); err != nil {
		return fmt.Errorf("cluster: heartbeat: %w", err)
	}
	return nil
}

func (p *Pool) heartbeatLoop(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(p.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			hctx, cancel := context.WithTimeout(ctx, p.ttl/3)
			if err := p.heartbeat(hctx); err != nil && ctx.Err() == nil {
				p.log.Warn("cannot refresh the caller's heartbeat", zap.Error(err))
			}
			cancel()
			// Forget agents that vanished long ago (killed: their entry
			// expired without a delete).
			p.mu.Lock()
			for k, a := range p.agents {
				if time.Since(a.seen) > 10*p.ttl {
					delete(p.agents, k)
				}
			}
			p.mu.Unlock()
		}
	}
}

// watchAgents follows the agents' status entries.
func (p *Pool) watchAgents(ctx context.Context, w jetstream.KeyWatcher) {
	defer p.wg.Done()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue
			}
			p.agentUpdate(e)
		}
	}
}

func (p *Pool) agentUpdate(e jetstream.KeyValueEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(p.agents, e.Key())
		return
	}
	var info AgentInfo
	if err := json.Unmarshal(e.Value(), &info); err != nil {
		return
	}
	p.agents[e.Key()] = &agentSeen{info: info, seen: time.Now()}
	if info.Build != p.ns && !p.warned[info.ID] {
		p.warned[info.ID] = true
		p.log.Warn("an agent of another build is connected; it never receives this program's tasks (run the same binary on every host)",
			zap.String("agent", info.ID), zap.String("host", info.Host), zap.String("agent_build", info.Build), zap.String("build", p.ns))
	}
}

// trackLoop is the caller's completeness check: a chunk that has gone
// RepublishAfter without a sign (its result, or a claim while it runs)
// is looked up in the stream, and published again under the same id if
// its message is gone.
func (p *Pool) trackLoop(ctx context.Context) {
	defer p.wg.Done()
	period := min(p.o.republish/4, time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.track(ctx)
		}
	}
}

const maxChecksPerRound = 256

func (p *Pool) track(ctx context.Context) {
	now := time.Now()
	// What is due, read under p.mu: results, claims and the splitting of
	// packs change it meanwhile.
	type check struct {
		s       *sent
		lost    bool // its publish failed
		subject string
	}
	var due []check
	p.mu.Lock()
	for _, s := range p.chunks {
		if now.Sub(s.last) >= p.o.republish && !s.reading {
			due = append(due, check{s, s.last.IsZero(), s.subject})
			if len(due) == maxChecksPerRound {
				break
			}
		}
	}
	p.mu.Unlock()
	for _, d := range due {
		s, lost := d.s, d.lost
		if !lost {
			gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := p.stream.GetLastMsgForSubject(gctx, d.subject)
			cancel()
			switch {
			case err == nil:
			case errors.Is(err, jetstream.ErrMsgNotFound):
				lost = true
			default:
				continue // the server is not reachable now: try later
			}
		}
		p.mu.Lock()
		if p.chunks[s.id] != s {
			p.mu.Unlock()
			continue
		}
		s.last = time.Now()
		if lost {
			if s.pack != nil {
				p.unpackLocked(s) // the others of its pack go alone too
			} else {
				s.gen++
			}
			p.stats.republished++
		}
		gen := s.gen
		p.mu.Unlock()
		if lost {
			p.log.Info("a chunk's message is gone from the stream without a result; publishing it again",
				zap.String("task", s.c.task), zap.Int("start", s.start), zap.Int("count", s.n), zap.Int("generation", gen))
			p.publish(s)
		}
	}
}

// Close stops the pool: calls still running fail with pool.ErrTerminated,
// this caller's chunks are purged from the stream, the local agents are
// stopped (SIGTERM, then SIGKILL after a grace), the connection is
// closed, and an embedded server is shut down and its store removed.
// Close is idempotent; calls after it fail with pool.ErrClosed.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return nil
	}
	p.closed = true
	var fail []*sent
	for _, s := range p.chunks {
		fail = append(fail, s)
	}
	p.mu.Unlock()
	for _, s := range fail {
		p.mu.Lock()
		p.removeLocked(s)
		p.mu.Unlock()
		s.c.deliver(pool.ChunkResult{Start: s.start, N: s.n, Err: pool.ErrTerminated})
	}
	p.shutdown()
	return nil
}

// Terminate is Close, so that code written for a *pool.Pool (defer
// p.Terminate()) reads the same.
func (p *Pool) Terminate() error { return p.Close() }

func (p *Pool) shutdown() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	if p.stop != nil {
		p.stop()
	}
	if p.kv != nil && p.nc != nil && !p.nc.IsClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		p.kv.Delete(ctx, callerKey(p.ns, p.id))
		if p.stream != nil {
			p.stream.Purge(ctx, jetstream.WithPurgeSubject(callerSubjects(p.ns, p.id)))
		}
		cancel()
	}
	p.stopLocalAgents()
	p.wg.Wait()
	if p.big != nil && p.emb == nil && !p.nc.IsClosed() {
		p.removeOwnObjects()
	}
	if p.sub != nil {
		p.sub.Unsubscribe()
	}
	if p.nc != nil {
		p.nc.Close()
	}
	if p.emb != nil {
		p.emb.close()
	}
	select {
	case <-p.done:
	default:
		close(p.done)
	}
}
