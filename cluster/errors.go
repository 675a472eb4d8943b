// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"errors"
	"fmt"

	"github.com/multiproc/multiproc/ipc/remote"
)

var (
	// ErrTooLarge is the error of the tasks of a chunk whose inputs, or
	// results, are over the server's maximum message size and that the
	// big-payload bucket did not take either (over 256 MiB, the bucket's
	// MaxBytes reached, JetStream out of storage...). Payloads the
	// bucket takes travel through it (see ErrPayloadLost).
	ErrTooLarge = errors.New("cluster: chunk too large")
	// ErrPayloadLost is the error of a chunk whose inputs (or outputs)
	// object is missing from the big-payload bucket, or is not the one
	// its message names (other size or digest): the chunk is not run on
	// other bytes.
	ErrPayloadLost = errors.New("cluster: a big payload's object is missing or corrupt")
	// ErrPoison is matched (errors.Is) by a *PoisonError.
	ErrPoison = errors.New("cluster: chunk delivered too many times")
)

// PoisonError is the error of the tasks of a chunk that was delivered
// MaxDeliveries times, each agent that held it having vanished (killed,
// crashed, cut off) before answering: it is not delivered again.
type PoisonError struct {
	Task       string // the task's registered name
	Index      int    // the chunk's first task in its call
	Count      int    // the chunk's number of tasks
	Deliveries int
}

func (e *PoisonError) Error() string {
	return fmt.Sprintf("cluster: task %s[%d..%d] was delivered %d times and every agent holding it vanished; not running it again",
		e.Task, e.Index, e.Index+e.Count-1, e.Deliveries)
}

// Is makes errors.Is(err, ErrPoison) true.
func (e *PoisonError) Is(target error) bool { return target == ErrPoison }

// AgentError is an error an agent reported about a task that is not the
// task's own (its message could not be decoded, its task is unknown to
// the agent's build...).
type AgentError struct {
	Agent string // the agent's id
	Task  string
	Index int
	remote.Report
}

func (e *AgentError) Error() string {
	return fmt.Sprintf("cluster: agent %s: task %s[%d]: %s", e.Agent, e.Task, e.Index, e.Message)
}
