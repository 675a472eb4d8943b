// SPDX-License-Identifier: Apache-2.0

// Package cluster runs pool tasks on many machines through NATS
// JetStream: the same registered pool.Task values and the same calls
// (Map, Imap, ImapUnordered, Starmap, Apply, Submit, ApplyAsync) as on a
// local pool, with a cluster Pool in place of a *pool.Pool.
//
//	process.Init() // first thing in main
//	p, err := cluster.New(ctx) // was: pool.New(ctx)
//	...
//	defer p.Close()
//	squares, err := Square.Map(ctx, p, xs)
//
// New with no address embeds a nats-server with JetStream in the
// process (its store in a private temporary directory, removed by Close)
// and starts local agents as child processes, one per CPU: the pool works
// on one machine out of the box. Listen lets agents on other hosts join
// (beyond loopback, only with credentials: Auth); URL uses an existing
// NATS deployment instead. Auth and ServerTLS pass a token, a user and
// password, a creds or nkey file and TLS to every connection; agents on
// other hosts take them from the environment (EnvToken, ...).
//
// # Agents
//
// A program that imports this package becomes an agent when it is
// started with MULTIPROC_CLUSTER set to a NATS URL: process.Init() runs
// the agent instead of main. An agent runs tasks in its own local
// pool.Pool of worker processes (crash isolation is kept), pulls only the
// chunks it has room for (one or two per worker, more while chunks are
// very short), answers each on its caller's
// subject and acknowledges it once the result is published, and sends
// in-progress heartbeats while a chunk runs.
//
// Chunks travel in the pool's encoding, which assumes the same binary at
// both ends, so tasks are namespaced by the binary's build identity and
// GOARCH (Namespace): an agent never receives the work of another build.
// A mismatched agent is visible: it logs that every live caller is of
// another build and says so in its status entry, and callers log it and
// list it in Pool.Agents with Match false.
//
// # Semantics
//
//   - Execution is at least once: a chunk whose agent vanished (killed,
//     crashed, cut off) runs again on another agent after the ack wait
//     (AckWait, default 5s). Each chunk's result is accepted once;
//     duplicates are dropped. Tasks should be idempotent.
//   - Inside an agent, a worker's death has the local pool's semantics:
//     *pool.WorkerDiedError, Retries; TaskTimeout kills the remote
//     worker and the task fails with a *pool.TimeoutError.
//   - A chunk delivered MaxDeliveries times, each agent holding it having
//     vanished, fails with a *PoisonError that names the task.
//   - Cancelling a call's context (or breaking out of an Imap) purges its
//     queued chunks and cancels its running tasks on the agents.
//   - A caller that dies stops refreshing its status entry; agents then
//     drop and purge its chunks. The stream has an age limit as well.
//   - A message that is not a valid chunk, or names a task the agent's
//     build does not know, fails that chunk; the agent goes on.
//   - Completeness does not rest on the broker: the caller tracks every
//     chunk until its result arrives and publishes again (same chunk id)
//     one whose message vanished from the stream (RepublishAfter).
//   - Payloads of any size: a chunk, or a chunk's results, over the
//     server's maximum message size travels through a JetStream Object
//     Store bucket of the build, and is removed once its result is in
//     (on Close, and by the agents when its caller died). An object
//     missing or replaced fails its chunk with ErrPayloadLost; one the
//     bucket does not take, with ErrTooLarge.
//
// See docs/cluster.md for the deployment guide.
package cluster
