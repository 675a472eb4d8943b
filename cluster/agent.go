// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/multiproc/multiproc/pool"
	pb "github.com/multiproc/multiproc/proto/cluster/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// AgentInfo is an agent's status entry (the status bucket, Pool.Agents).
type AgentInfo struct {
	ID       string `json:"id"`
	Host     string `json:"host"`
	Pid      int    `json:"pid"`
	Build    string `json:"build"`    // the agent's namespace (Namespace)
	Capacity int    `json:"capacity"` // tasks it runs at once (its workers)
	InFlight int    `json:"in_flight"`
	Done     uint64 `json:"done"`   // chunks answered
	Failed   uint64 `json:"failed"` // chunks answered with an error for every task
	// Redelivered counts the chunks it received that another agent had
	// held before (it vanished).
	Redelivered uint64 `json:"redelivered"`
	// OtherBuilds lists the builds of live callers when none is of the
	// agent's own: it receives none of their work.
	OtherBuilds []string `json:"other_builds,omitempty"`
	// Match is set by Pool.Agents: the agent runs this program's build.
	Match bool `json:"-"`
}

// agentConfig is what an agent is started with.
type agentConfig struct {
	URL     string
	Workers int
	Creds   Credentials
	// ExitWithParent ends the agent when its parent process is gone (a
	// local agent of a cluster.New).
	ExitWithParent bool
}

// binding is what an agent's bind found or created.
type binding struct {
	stream jetstream.Stream
	cons   jetstream.Consumer
	kv     jetstream.KeyValue
	ttl    time.Duration // of the callers' status entries
}

type jobKey struct {
	caller string
	job    uint64
}

// agent pulls chunks of its build from the stream and runs them in its
// own local pools of worker processes.
type agent struct {
	cfg  agentConfig
	log  *zap.Logger
	id   string
	ns   string
	host string

	nc *nats.Conn
	js jetstream.JetStream
	// b is the stream, consumer and status bucket the agent is bound to:
	// the fetch loop binds again (bind) while other goroutines use them.
	b   atomic.Pointer[binding]
	big *bigStore // chunks and results over the maximum message size

	// Chunks in hand (pulled and not answered): up to handLimit.
	inHand  atomic.Int64
	room    chan struct{} // signalled when a chunk leaves the hand
	runEWMA atomic.Int64  // recent chunks' run time, ns

	poolsMu sync.Mutex
	pools   map[poolKey]*localPool

	mu        sync.Mutex
	held      map[*heldChunk]struct{}
	jobs      map[jobKey]*agentJob
	cancelled map[jobKey]time.Time
	callers   map[string]*callerSeen
	others    []string

	replicas                         int // of the status bucket, if it must be created again
	ackWait                          atomic.Int64
	done, failed, redelivered, recvd atomic.Uint64
	wg                               sync.WaitGroup
}

type poolKey struct {
	timeout time.Duration
	retries int
}

type localPool struct {
	ready chan struct{}
	p     *pool.Pool
	err   error
	// Under agent.poolsMu: chunks using it, and when the last one left.
	users int
	last  time.Time
}

// idlePool is how long a local pool with options other than the
// defaults is kept without chunks before its workers are stopped.
var idlePool = time.Minute

type callerSeen struct {
	ns     string
	seen   time.Time
	dead   bool
	purged bool
}

type agentJob struct {
	ctx    context.Context
	cancel context.CancelFunc
	refs   int
}

type heldChunk struct {
	msg    jetstream.Msg
	caller string
	ids    []uint64 // its chunks (one, or a pack's)
}

// runAgent is an agent's life: it returns when ctx ends (SIGTERM), having
// handed back what it held.
func runAgent(ctx context.Context, cfg agentConfig, log *zap.Logger) error {
	host, _ := os.Hostname()
	a := &agent{cfg: cfg, log: log, id: strings.ToLower(nuid.Next()), ns: namespace(), host: host,
		room: make(chan struct{}, 1), pools: map[poolKey]*localPool{}, held: map[*heldChunk]struct{}{},
		jobs: map[jobKey]*agentJob{}, cancelled: map[jobKey]time.Time{}, callers: map[string]*callerSeen{}}
	a.log = a.log.With(zap.String("agent", a.id))
	if cfg.ExitWithParent {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go watchParent(ctx, cancel)
	}
	nc, err := connectAgent(cfg, a.log)
	if err != nil {
		return err
	}
	a.nc = nc
	defer nc.Close()
	if err := a.setup(ctx); err != nil {
		return err
	}
	// The default pool's workers are started before the agent reports
	// any capacity.
	if _, release, err := a.localPool(ctx, poolKey{}); err != nil {
		return err
	} else {
		release()
	}
	ctlSub, err := nc.Subscribe(controlSubject(a.ns), a.onControl)
	if err != nil {
		return err
	}
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	watcher, err := a.bound().kv.Watch(bg, "caller.>")
	if err != nil {
		return fmt.Errorf("cluster: agent: watching the callers: %w", err)
	}
	a.wg.Add(3)
	go a.watchCallers(bg, watcher)
	go a.statusLoop(bg)
	go a.heartbeatLoop(bg)
	a.putStatus(ctx)
	a.log.Info("agent ready", zap.String("build", a.ns), zap.Int("workers", cfg.Workers), zap.String("url", cfg.URL))

	a.fetchLoop(ctx)

	// Stopping: running chunks see ctx end and hand their messages back
	// (Nak), so that another agent takes them at once.
	a.waitHandlers()
	ctlSub.Unsubscribe()
	stopBG()
	a.wg.Wait()
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	a.bound().kv.Delete(dctx, agentKey(a.ns, a.id))
	cancel()
	a.closePools()
	if nc.IsConnected() {
		nc.FlushTimeout(time.Second)
	}
	return nil
}

func (a *agent) setup(ctx context.Context) error {
	js, err := jetstream.New(a.nc)
	if err != nil {
		return err
	}
	a.js = js
	o := defaults()
	o.replicas = autoReplicas(a.nc)
	a.replicas = o.replicas // before the goroutines that read it start
	a.big = newBigStore(js, a.ns, &o, false)
	for {
		if err = a.bind(ctx, &o); err == nil {
			return nil
		}
		a.log.Warn("cannot reach the cluster's stream yet; retrying", zap.Error(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (a *agent) bind(ctx context.Context, o *options) error {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var (
		b   binding
		err error
	)
	if b.stream, err = ensureStream(sctx, a.js, o, false); err != nil {
		return err
	}
	b.cons, err = a.js.Consumer(sctx, streamName, consumerName(a.ns))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		// No caller of this build yet: create it with the defaults (a
		// caller updates its AckWait).
		b.cons, err = a.js.CreateConsumer(sctx, streamName, consumerConfig(a.ns, o.ackWait))
		if errors.Is(err, jetstream.ErrConsumerExists) {
			b.cons, err = a.js.Consumer(sctx, streamName, consumerName(a.ns))
		}
	}
	if err != nil {
		return fmt.Errorf("cluster: agent: the consumer: %w", err)
	}
	if b.kv, b.ttl, err = ensureStatus(sctx, a.js, o.callerTTL, o.replicas, false); err != nil {
		return err
	}
	a.ackWait.Store(int64(b.cons.CachedInfo().Config.AckWait))
	a.b.Store(&b)
	return nil
}

// bound returns what the agent is bound to (set before any goroutine of
// the agent starts).
func (a *agent) bound() *binding { return a.b.Load() }

// watchParent cancels when this process's parent is gone.
func watchParent(ctx context.Context, cancel context.CancelFunc) {
	ppid := os.Getppid()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if os.Getppid() != ppid {
				cancel()
				return
			}
		}
	}
}

// handLimit is how many chunks the agent pulls ahead of its workers. A
// chunk pulled waits for a worker of this agent even when another agent
// is idle, so the agent pulls one chunk per worker while it does not
// know how long chunks run (or they run long: a short chunk must not wait
// behind a long one here while other agents idle), two per worker while
// they run under slowChunk, and, while they run in under fastChunk,
// enough to keep the local pool's pipeline full (it keeps up to 128
// tasks in flight per worker).
func (a *agent) handLimit() int64 {
	w := int64(a.cfg.Workers)
	switch ewma := time.Duration(a.runEWMA.Load()); {
	case ewma <= 0 || ewma >= slowChunk:
		return w
	case ewma < fastChunk:
		return 32 * w
	default:
		return 2 * w
	}
}

const (
	fastChunk = 2 * time.Millisecond
	slowChunk = 100 * time.Millisecond
)

// noteRun folds a chunk's run time into the running average.
func (a *agent) noteRun(d time.Duration) {
	old := a.runEWMA.Load()
	if old == 0 {
		a.runEWMA.Store(int64(d))
		return
	}
	a.runEWMA.Store(old + (int64(d)-old)/8)
}

// fetchLoop pulls as many chunks as the agent has room for.
func (a *agent) fetchLoop(ctx context.Context) {
	for ctx.Err() == nil {
		free := a.handLimit() - a.inHand.Load()
		if free <= 0 {
			select {
			case <-a.room:
			case <-ctx.Done():
				return
			}
			continue
		}
		batch, err := a.bound().cons.Fetch(int(free), jetstream.FetchMaxWait(time.Second))
		if err == nil {
			for msg := range batch.Messages() {
				// Chunks reach the local pool in the order they were
				// pulled (a short chunk must not queue behind a long one
				// that came after it); their results are awaited
				// concurrently.
				a.inHand.Add(1)
				a.handle(ctx, msg)
			}
			// A pull the server could not serve (the consumer is gone,
			// its leader changed) ends the batch with an error: without
			// a pause, the next pull would fail at once, again and again.
			err = batch.Error()
		}
		if err == nil || ctx.Err() != nil {
			continue
		}
		a.log.Debug("fetch failed", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		if consumerGone(err) {
			o := defaults()
			o.replicas = a.replicas
			if err := a.bind(ctx, &o); err != nil {
				a.log.Warn("cannot bind to the cluster's stream again", zap.Error(err))
			}
		}
	}
}

// consumerGone reports whether a pull failed because the agents'
// consumer (or its stream) is gone: the agent binds again, creating them.
func consumerGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrStreamNotFound)
}

func (a *agent) leave() {
	a.inHand.Add(-1)
	select {
	case a.room <- struct{}{}:
	default:
	}
}

// waitHandlers waits until no chunk is in hand.
func (a *agent) waitHandlers() {
	for a.inHand.Load() > 0 {
		select {
		case <-a.room:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// handle hands one chunk message to the local pool, or answers it at once
// (a bad message, a dead caller, a cancelled call, a poison chunk). The
// chunk leaves the hand (leave) once it is answered: when the local pool
// delivers its result, on the goroutine that delivers it (no goroutine
// per chunk).
func (a *agent) handle(ctx context.Context, msg jetstream.Msg) {
	a.recvd.Add(1)
	c, err := decodeChunk(msg.Data())
	if err != nil {
		a.log.Warn("dropping a message that is not a valid chunk", zap.String("subject", msg.Subject()), zap.Error(err))
		if validToken(c.GetCaller()) && c.GetCaller() != "" {
			for _, pc := range partsOf(c) {
				if pc.GetId() != 0 {
					a.reply(pc, nil, &pb.Failure{Error: remoteErr(fmt.Errorf("cluster: agent %s: %w", a.id, err))})
				}
			}
		}
		msg.Term()
		a.leave()
		return
	}
	if a.callerDead(ctx, c.Caller) {
		a.log.Info("dropping a chunk of a dead caller", zap.String("caller", c.Caller))
		msg.Term()
		a.purgeCaller(c.Caller)
		a.leave()
		return
	}
	key := jobKey{c.Caller, c.Job}
	deliveries := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		deliveries = md.NumDelivered
	}
	if deliveries > 1 {
		a.redelivered.Add(1)
	}
	parts := partsOf(c)
	if max := uint64(c.MaxDeliveries); max > 0 && deliveries > max {
		for _, pc := range parts {
			// The caller publishes each chunk of a pack again alone.
			perr := &PoisonError{Task: pc.Task, Index: int(pc.Start), Count: int(pc.Count), Deliveries: int(deliveries - 1)}
			a.log.Warn("poison chunk: every agent that held it vanished", zap.Error(perr))
			a.reply(pc, nil, &pb.Failure{Error: remoteErr(perr)})
		}
		msg.Term()
		a.leave()
		return
	}
	jctx, release, ok := a.holdJob(ctx, key)
	if !ok {
		msg.Ack() // its call was cancelled
		a.leave()
		return
	}
	h := &heldChunk{msg: msg, caller: c.Caller, ids: make([]uint64, len(parts))}
	for i, pc := range parts {
		h.ids[i] = pc.Id
	}
	a.mu.Lock()
	a.held[h] = struct{}{}
	a.mu.Unlock()
	// The message is settled (acknowledged, or handed back) once each of
	// its chunks is answered.
	var (
		mu      sync.Mutex
		left    = len(parts)
		nak     bool // a chunk's result could not be published
		unreach bool // a chunk's inputs could not be read now
	)
	t0 := time.Now()
	finish := func(pc *pb.Chunk, r *pool.ChunkResult, err error) {
		var rerr error
		switch {
		case ctx.Err() != nil, jctx.Err() != nil:
		case errors.Is(err, errUnreachable):
			// Its inputs' object could not be read now: it runs later.
			a.log.Warn("cannot read a chunk's inputs now; handing it back", zap.Error(err))
			rerr = err
		case err != nil:
			rerr = a.reply(pc, nil, &pb.Failure{Error: remoteErr(fmt.Errorf("cluster: agent %s: %w", a.id, err))})
		default:
			rerr = a.reply(pc, r, nil)
		}
		mu.Lock()
		if rerr != nil {
			nak = true
			unreach = unreach || errors.Is(rerr, errUnreachable)
		}
		left--
		last := left == 0
		mu.Unlock()
		if !last {
			return
		}
		switch {
		case ctx.Err() != nil:
			// The agent is stopping: another agent runs it.
			msg.Nak()
		case jctx.Err() != nil:
			msg.Ack() // cancelled by its caller, who wants no result
		case unreach:
			msg.NakWithDelay(time.Second)
		case nak:
			msg.Nak() // not answered: it runs again
		default:
			a.noteRun(time.Since(t0))
			msg.Ack()
		}
		// Held (heartbeats keep it claimed) until it is answered: a big
		// result is put in the object store first.
		a.mu.Lock()
		delete(a.held, h)
		a.mu.Unlock()
		release()
		a.leave()
	}
	if c.InputsRef != nil {
		if err := a.readInputs(jctx, c); err != nil {
			finish(c, nil, err)
			return
		}
	}
	a.send(jctx, parts, finish)
}

// send hands chunks of one call to the local pool that has their
// options, in one local call; done gets each chunk's result (or error),
// once. Chunks reach the local pool in the order they were pulled: a
// short chunk must not queue behind a long one pulled after it.
func (a *agent) send(ctx context.Context, parts []*pb.Chunk, done func(*pb.Chunk, *pool.ChunkResult, error)) {
	c := parts[0]
	lp, release, err := a.localPool(ctx, poolKey{timeout: time.Duration(c.TaskTimeoutNs), retries: int(c.Retries)})
	if err != nil {
		for _, pc := range parts {
			done(pc, nil, err)
		}
		return
	}
	var (
		mu     sync.Mutex
		byPos  = make(map[int]int, len(parts)) // part by its first task
		fin    = make([]bool, len(parts))
		left   = len(parts)
		call   pool.Call
		closed bool
	)
	for i, pc := range parts {
		byPos[int(pc.Start)] = i // distinct: checkParts
	}
	// end marks part i answered; the last one ends the local call.
	end := func(i int) bool {
		mu.Lock()
		defer mu.Unlock()
		if fin[i] {
			return false
		}
		fin[i] = true
		left--
		if left == 0 && call != nil && !closed {
			closed = true
			call.Close()
			release()
		}
		return true
	}
	call, err = lp.StartCall(ctx, c.Task, func(r pool.ChunkResult) {
		mu.Lock()
		i, ok := byPos[r.Start]
		mu.Unlock()
		if ok && end(i) {
			done(parts[i], &r, nil)
		}
	})
	if err != nil {
		release()
		for _, pc := range parts {
			done(pc, nil, err)
		}
		return
	}
	for i, pc := range parts {
		if err := call.Send(int(pc.Start), int(pc.Count), pc.Inputs); err != nil && end(i) {
			done(pc, nil, err)
		}
	}
}

// reply publishes a chunk's result (or all, the error of all its tasks)
// on its caller's subject.
func (a *agent) reply(c *pb.Chunk, r *pool.ChunkResult, all *pb.Failure) error {
	m := &pb.Result{Job: c.GetJob(), Id: c.GetId(), Agent: a.id, All: all}
	if r != nil {
		if r.Err != nil {
			m.All = failureOf(0, r.Err)
		} else {
			m.Outputs = r.Outputs
			for _, f := range r.Failed {
				m.Failures = append(m.Failures, failureOf(f.Index, f.Err))
			}
		}
	}
	if m.All != nil {
		a.failed.Add(1)
	}
	a.done.Add(1)
	b, err := proto.Marshal(&pb.ToCaller{Msg: &pb.ToCaller_Result{Result: m}})
	if err == nil && len(b) > msgLimit(a.nc) {
		// The results do not fit in a message: the object store takes
		// them.
		b, err = a.bigReply(c, m, len(b))
	}
	if err == nil {
		err = a.nc.Publish(resultSubject(c.GetCaller()), b)
	}
	if err != nil {
		a.log.Warn("cannot publish a result", zap.Error(err))
	}
	return err
}

// localPool returns the local pool with these options, starting it on
// first use; release says the caller is done with it.
func (a *agent) localPool(ctx context.Context, k poolKey) (*pool.Pool, func(), error) {
	a.poolsMu.Lock()
	lp := a.pools[k]
	if lp == nil {
		lp = &localPool{ready: make(chan struct{}), users: 1}
		a.pools[k] = lp
		a.poolsMu.Unlock()
		opts := []pool.Option{pool.Workers(a.cfg.Workers), pool.Logger(a.log), pool.Retries(k.retries)}
		if k.timeout > 0 {
			opts = append(opts, pool.TaskTimeout(k.timeout))
		}
		lp.p, lp.err = pool.New(context.Background(), opts...)
		close(lp.ready)
		if lp.err != nil {
			a.poolsMu.Lock()
			delete(a.pools, k)
			a.poolsMu.Unlock()
		}
	} else {
		lp.users++
		a.poolsMu.Unlock()
	}
	release := func() {
		a.poolsMu.Lock()
		lp.users--
		lp.last = time.Now()
		a.poolsMu.Unlock()
	}
	select {
	case <-lp.ready:
	case <-ctx.Done():
		release()
		return nil, nil, ctx.Err()
	}
	if lp.err != nil {
		release()
		return nil, nil, lp.err
	}
	return lp.p, release, nil
}

// closeIdlePools stops the local pools with other options than the
// defaults that no chunk used for idlePool.
func (a *agent) closeIdlePools() {
	var idle []*pool.Pool
	a.poolsMu.Lock()
	for k, lp := range a.pools {
		select {
		case <-lp.ready:
		default:
			continue
		}
		if k != (poolKey{}) && lp.users == 0 && lp.p != nil && time.Since(lp.last) > idlePool {
			delete(a.pools, k)
			idle = append(idle, lp.p)
		}
	}
	a.poolsMu.Unlock()
	for _, p := range idle {
		p.Terminate()
	}
}

func (a *agent) closePools() {
	a.poolsMu.Lock()
	defer a.poolsMu.Unlock()
	for _, lp := range a.pools {
		<-lp.ready
		if lp.p != nil {
			lp.p.Terminate()
		}
	}
}

// holdJob returns the context of a job's tasks (cancelled by a Cancel),
// or false when the job was cancelled already.
func (a *agent) holdJob(ctx context.Context, k jobKey) (context.Context, func(), bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.cancelled[k]; ok {
		return nil, nil, false
	}
	j := a.jobs[k]
	if j == nil {
		j = &agentJob{}
		j.ctx, j.cancel = context.WithCancel(ctx)
		a.jobs[k] = j
	}
	j.refs++
	return j.ctx, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if j.refs--; j.refs == 0 && a.jobs[k] == j {
			delete(a.jobs, k)
			j.cancel()
		}
	}, true
}

func (a *agent) onControl(m *nats.Msg) {
	var c pb.Cancel
	if err := proto.Unmarshal(m.Data, &c); err != nil {
		return
	}
	k := jobKey{c.Caller, c.Job}
	a.mu.Lock()
	a.cancelled[k] = time.Now()
	j := a.jobs[k]
	a.mu.Unlock()
	if j != nil {
		j.cancel()
	}
}

// callerDead reports whether a caller is known to be gone: its status
// entry expired or was deleted. A caller the watch has not shown (yet) is
// looked up once.
func (a *agent) callerDead(ctx context.Context, id string) bool {
	bd := a.bound()
	a.mu.Lock()
	cs := a.callers[id]
	if cs != nil && (cs.dead || time.Since(cs.seen) < bd.ttl) {
		a.mu.Unlock()
		return cs.dead
	}
	a.mu.Unlock()
	gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := bd.kv.Get(gctx, callerKey(a.ns, id))
	young := errors.Is(err, jetstream.ErrKeyNotFound) && statusYoung(gctx, bd.kv, bd.ttl)
	a.mu.Lock()
	defer a.mu.Unlock()
	cs = a.callers[id]
	if cs == nil {
		cs = &callerSeen{ns: a.ns}
		a.callers[id] = cs
	}
	switch {
	case err == nil:
		cs.seen, cs.dead = time.Now(), false
	case errors.Is(err, jetstream.ErrKeyNotFound) && !young:
		cs.dead = true
	}
	return cs.dead
}

// purgeCaller drops a dead caller's chunks from the stream (once).
func (a *agent) purgeCaller(id string) {
	a.mu.Lock()
	cs := a.callers[id]
	if cs == nil || cs.purged {
		a.mu.Unlock()
		return
	}
	cs.purged = true
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.bound().stream.Purge(ctx, jetstream.WithPurgeSubject(callerSubjects(a.ns, id))); err != nil {
		a.log.Debug("cannot purge a dead caller's chunks", zap.Error(err))
	}
	a.removeCallerObjects(ctx, id)
}

func (a *agent) watchCallers(ctx context.Context, w jetstream.KeyWatcher) {
	defer a.wg.Done()
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
			_, ns, id, ok := nsOfKey(e.Key())
			if !ok {
				continue
			}
			a.mu.Lock()
			cs := a.callers[id]
			if cs == nil {
				cs = &callerSeen{ns: ns}
				a.callers[id] = cs
			}
			if e.Operation() == jetstream.KeyValuePut {
				cs.seen, cs.dead = time.Now(), false
			} else {
				cs.dead = true
			}
			a.mu.Unlock()
		}
	}
}

// heartbeatLoop tells JetStream (InProgress) and the callers (Claim)
// that the chunks in hand are alive, every quarter of the ack wait.
func (a *agent) heartbeatLoop(ctx context.Context) {
	defer a.wg.Done()
	for {
		d := max(time.Duration(a.ackWait.Load())/4, 25*time.Millisecond)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		a.mu.Lock()
		claims := map[string][]uint64{}
		var msgs []jetstream.Msg
		for h := range a.held {
			msgs = append(msgs, h.msg)
			claims[h.caller] = append(claims[h.caller], h.ids...)
		}
		a.mu.Unlock()
		for _, m := range msgs {
			m.InProgress()
		}
		for caller, ids := range claims {
			b, _ := proto.Marshal(&pb.ToCaller{Msg: &pb.ToCaller_Claim{Claim: &pb.Claim{Agent: a.id, Ids: ids}}})
			a.nc.Publish(resultSubject(caller), b)
		}
	}
}

// statusLoop refreshes the agent's status entry, sweeps dead callers and
// notices when every live caller is of another build.
func (a *agent) statusLoop(ctx context.Context) {
	defer a.wg.Done()
	t := time.NewTicker(a.bound().ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.sweep(ctx)
		a.closeIdlePools()
		a.putStatus(ctx)
		if info, err := a.bound().cons.Info(ctx); err == nil {
			a.ackWait.Store(int64(info.Config.AckWait))
		}
	}
}

func (a *agent) sweep(ctx context.Context) {
	ttl := a.bound().ttl
	var stale []string
	builds := map[string]bool{}
	mine := false
	a.mu.Lock()
	for id, cs := range a.callers {
		live := !cs.dead && time.Since(cs.seen) < ttl
		switch {
		case live && cs.ns == a.ns:
			mine = true
		case live:
			builds[cs.ns] = true
		case cs.ns == a.ns && !cs.purged:
			stale = append(stale, id)
		case cs.dead && time.Since(cs.seen) > 10*ttl:
			delete(a.callers, id)
		}
	}
	for k, t := range a.cancelled {
		if time.Since(t) > 10*time.Minute {
			delete(a.cancelled, k)
		}
	}
	var others []string
	if !mine {
		for b := range builds {
			others = append(others, b)
		}
		slices.Sort(others)
	}
	changed := !slices.Equal(others, a.others)
	a.others = others
	a.mu.Unlock()
	if changed && len(others) > 0 {
		a.log.Warn("every live caller runs another build: this agent receives none of their tasks (run the same binary on every host)",
			zap.String("build", a.ns), zap.Strings("caller_builds", others))
	}
	for _, id := range stale {
		if a.callerDead(ctx, id) {
			a.log.Info("a caller is gone; purging its chunks", zap.String("caller", id))
			a.purgeCaller(id)
		}
	}
}

func (a *agent) putStatus(ctx context.Context) {
	a.mu.Lock()
	info := AgentInfo{ID: a.id, Host: a.host, Pid: os.Getpid(), Build: a.ns, Capacity: a.cfg.Workers, InFlight: len(a.held),
		Done: a.done.Load(), Failed: a.failed.Load(), Redelivered: a.redelivered.Load(), OtherBuilds: a.others}
	a.mu.Unlock()
	b, _ := json.Marshal(info)
	bd := a.bound()
	pctx, cancel := context.WithTimeout(ctx, bd.ttl/3)
	defer cancel()
	if err := putStatus(pctx, a.js, bd.kv, agentKey(a.ns, a.id), b, bd.ttl, a.replicas, a.log); err != nil && ctx.Err() == nil {
		a.log.Warn("cannot refresh the agent's status", zap.Error(err))
	}
}
