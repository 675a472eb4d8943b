// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"fmt"
	"time"

	"go.uber.org/zap"
)

// An Option configures a cluster Pool (New).
type Option func(*options) error

type options struct {
	url          string
	listen       string
	agents       int
	agentsSet    bool
	agentWorkers int
	syncInterval time.Duration
	syncAlways   bool
	ackWait      time.Duration
	maxDeliver   int
	republish    time.Duration
	callerTTL    time.Duration
	maxInFlight  int
	retries      int
	taskTimeout  time.Duration
	maxAge       time.Duration
	maxBytes     int64
	log          *zap.Logger
	creds        Credentials
	replicas     int // 0: autoReplicas
	// The embedded server's TLS (ServerTLS).
	tlsCert, tlsKey, tlsClientCA string
}

func defaults() options {
	return options{
		agentWorkers: 1,
		ackWait:      5 * time.Second,
		maxDeliver:   5,
		republish:    30 * time.Second,
		callerTTL:    15 * time.Second,
		maxInFlight:  4096,
		maxAge:       24 * time.Hour,
		maxBytes:     -1,
		log:          zap.NewNop(),
	}
}

// URL uses an existing NATS deployment (with JetStream enabled) at url,
// for example "nats://10.0.0.1:4222" or several comma-separated URLs of
// one cluster, instead of an embedded server. No local agent is started
// unless Agents says so: hosts join by running the program with
// MULTIPROC_CLUSTER set to the same URL.
func URL(url string) Option {
	return func(o *options) error {
		if url == "" {
			return fmt.Errorf("cluster: URL(%q): empty", url)
		}
		o.url = url
		return nil
	}
}

// Listen makes the embedded server listen on addr ("0.0.0.0:4222",
// ":4222"; port 0 picks a free one) so that agents on other hosts can
// join: Pool.URL tells them where. By default it listens on a free port of
// 127.0.0.1 only, for the local agents. Beyond loopback, New requires a
// token or a user and password (Auth) and fails with ErrNoCredentials
// without them. Listen has no effect with URL.
func Listen(addr string) Option {
	return func(o *options) error {
		if addr == "" {
			return fmt.Errorf("cluster: Listen(%q): empty", addr)
		}
		o.listen = addr
		return nil
	}
}

// Agents sets how many local agents New starts as child processes of
// this one: by default process.CPUCount() with the embedded server, none
// with URL. Each runs AgentWorkers worker processes.
func Agents(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("cluster: Agents(%d): must not be negative", n)
		}
		o.agents, o.agentsSet = n, true
		return nil
	}
}

// AgentWorkers sets the number of worker processes of each local agent
// (default 1).
func AgentWorkers(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("cluster: AgentWorkers(%d): must be at least 1", n)
		}
		o.agentWorkers = n
		return nil
	}
}

// SyncInterval sets how often the embedded server flushes its stream
// files to disk (nats-server's sync_interval; its default is two
// minutes). JetStream acknowledges a publish before the message is on
// disk, so an OS crash or power loss can lose what was acknowledged
// since the last flush. A cluster pool does not rest on that: a caller
// republishes a chunk whose message vanished (see docs/cluster.md). A
// shorter interval narrows the window at the cost of more disk writes.
// SyncInterval has no effect with URL (configure the servers).
func SyncInterval(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("cluster: SyncInterval(%v): must be positive", d)
		}
		o.syncInterval = d
		return nil
	}
}

// SyncAlways makes the embedded server flush every write to disk before
// acknowledging it: nothing acknowledged is lost in a crash, and each
// publish costs an fsync.
func SyncAlways() Option {
	return func(o *options) error {
		o.syncAlways = true
		return nil
	}
}

// AckWait is how long an agent may hold a chunk without a sign of life
// before JetStream delivers it to another agent (default 5s). Agents
// send in-progress heartbeats every quarter of it while a chunk runs, so
// only a vanished agent (killed, crashed, cut off) loses its chunks,
// which then run elsewhere after at most AckWait.
func AckWait(d time.Duration) Option {
	return func(o *options) error {
		if d < 100*time.Millisecond {
			return fmt.Errorf("cluster: AckWait(%v): must be at least 100ms", d)
		}
		o.ackWait = d
		return nil
	}
}

// MaxDeliveries is how many times a chunk is delivered to agents that
// vanished holding it before its tasks fail with a *PoisonError
// (default 5).
func MaxDeliveries(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("cluster: MaxDeliveries(%d): must be at least 1", n)
		}
		o.maxDeliver = n
		return nil
	}
}

// RepublishAfter bounds how long a submitted chunk may go without a sign
// from the cluster (its result, or an agent's claim while it runs)
// before the caller checks that its message is still in the stream, and
// publishes it again under the same chunk id if it is not (default
// 30s). Completeness therefore does not rest on the broker's durability:
// a lost message costs at most this delay, and a duplicate result is
// dropped. A publish whose acknowledgement does not come within a tenth
// of it (between 1s and 5s: 3s by default), as when the server that had
// it is killed, is published again at once, without waiting this long.
func RepublishAfter(d time.Duration) Option {
	return func(o *options) error {
		if d < 100*time.Millisecond {
			return fmt.Errorf("cluster: RepublishAfter(%v): must be at least 100ms", d)
		}
		o.republish = d
		return nil
	}
}

// CallerTTL is how long a caller may go without a heartbeat before agents
// consider it dead and drop its pending chunks (default 15s; heartbeats
// go every third of it). It is the status bucket's MaxAge.
func CallerTTL(d time.Duration) Option {
	return func(o *options) error {
		if d < 300*time.Millisecond {
			return fmt.Errorf("cluster: CallerTTL(%v): must be at least 300ms", d)
		}
		o.callerTTL = d
		return nil
	}
}

// MaxInFlight bounds the chunks a caller has submitted and not yet got
// back (default 4096); Send waits for room.
func MaxInFlight(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("cluster: MaxInFlight(%d): must be at least 1", n)
		}
		o.maxInFlight = n
		return nil
	}
}

// Retries is pool.Retries for the agents' local pools: a task whose
// worker process died runs again up to n more times before it fails with
// a *pool.WorkerDiedError.
func Retries(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("cluster: Retries(%d): must not be negative", n)
		}
		o.retries = n
		return nil
	}
}

// TaskTimeout is pool.TaskTimeout for the agents' local pools: each
// task's context has the deadline, and a task that does not return is
// killed with its worker and fails with a *pool.TimeoutError.
func TaskTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("cluster: TaskTimeout(%v): must be positive", d)
		}
		o.taskTimeout = d
		return nil
	}
}

// StreamLimits bounds the task stream, and the big-payload bucket (the
// Object Store that carries chunks and results over the maximum message
// size), when this caller creates them: chunks and objects older than
// maxAge are dropped (default 24h), and each holds at most maxBytes
// (default unlimited; a chunk publish beyond it fails and is retried, a
// payload the bucket cannot take fails its chunk with ErrTooLarge).
// Storage never grows without bound: a caller's chunks and objects are
// removed when it closes, and by the agents when it dies.
func StreamLimits(maxAge time.Duration, maxBytes int64) Option {
	return func(o *options) error {
		if maxAge <= 0 {
			return fmt.Errorf("cluster: StreamLimits(%v, %d): maxAge must be positive", maxAge, maxBytes)
		}
		o.maxAge, o.maxBytes = maxAge, maxBytes
		return nil
	}
}

// Logger sets the logger for the pool's diagnostics (republished
// chunks, agents of another build, ...). The default is zap.NewNop().
func Logger(l *zap.Logger) Option {
	return func(o *options) error {
		if l == nil {
			l = zap.NewNop()
		}
		o.log = l
		return nil
	}
}

// StreamReplicas sets how many servers keep a copy of the task stream
// and the status bucket when this caller creates them (1 to 5). By
// default a caller chooses 3 when it is connected to a NATS cluster of
// 3 or more servers (those it was given in URL and those the cluster
// advertises) and 1 otherwise, as the embedded server is. An existing
// stream keeps its replicas.
func StreamReplicas(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 5 {
			return fmt.Errorf("cluster: StreamReplicas(%d): want 1 to 5", n)
		}
		o.replicas = n
		return nil
	}
}
