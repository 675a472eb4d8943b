// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/pool"
	pb "github.com/multiproc/multiproc/proto/cluster/v1"
	"google.golang.org/protobuf/proto"
)

// Bounds on what an agent accepts from the stream: a message that passes
// them is decoded; one that does not fails (its task, when the message
// names one) and the agent goes on.
const (
	maxTaskName   = 1 << 10
	maxChunkTasks = 1 << 24
	maxCallerID   = 64
)

var errBadChunk = errors.New("cluster: malformed chunk message")

// decodeChunk decodes and checks a chunk message taken from the stream.
// On error, c holds what could be read (caller, job and id when the
// message got that far), so that the failure can be reported.
func decodeChunk(b []byte) (*pb.Chunk, error) {
	c := new(pb.Chunk)
	if err := proto.Unmarshal(b, c); err != nil {
		return c, fmt.Errorf("%w: %v", errBadChunk, err)
	}
	switch {
	case c.Caller == "" || len(c.Caller) > maxCallerID || !validToken(c.Caller):
		return c, fmt.Errorf("%w: bad caller id %q", errBadChunk, trim(c.Caller))
	case c.Task == "" || len(c.Task) > maxTaskName || !utf8.ValidString(c.Task):
		return c, fmt.Errorf("%w: bad task name %q", errBadChunk, trim(c.Task))
	case c.Count == 0 || c.Count > maxChunkTasks:
		return c, fmt.Errorf("%w: %d tasks", errBadChunk, c.Count)
	case c.TaskTimeoutNs < 0:
		return c, fmt.Errorf("%w: negative task timeout", errBadChunk)
	case c.Retries > 1000:
		return c, fmt.Errorf("%w: %d retries", errBadChunk, c.Retries)
	}
	if err := checkInputsRef(c); err != nil {
		return c, err
	}
	if err := checkParts(c); err != nil {
		return c, err
	}
	return c, nil
}

// maxParts bounds the chunks of a pack.
const maxParts = 1 << 10

// checkParts checks a pack's chunks (Chunk.parts).
func checkParts(c *pb.Chunk) error {
	if len(c.Parts) == 0 {
		return nil
	}
	if len(c.Parts) > maxParts || c.InputsRef != nil || len(c.Inputs) > 0 {
		return fmt.Errorf("%w: a pack of %d chunks with inputs of its own", errBadChunk, len(c.Parts))
	}
	total, next := 0, uint64(0)
	for _, pt := range c.Parts {
		if pt.Id == 0 || pt.Count == 0 || pt.Count > maxChunkTasks {
			return fmt.Errorf("%w: a pack's chunk %d of %d tasks", errBadChunk, pt.Id, pt.Count)
		}
		// Its chunks are consecutive runs of tasks of one call, in order.
		if uint64(pt.Start) < next {
			return fmt.Errorf("%w: a pack's chunks overlap at task %d", errBadChunk, pt.Start)
		}
		next = uint64(pt.Start) + uint64(pt.Count)
		total += int(pt.Count)
	}
	if total > maxChunkTasks {
		return fmt.Errorf("%w: a pack of %d tasks", errBadChunk, total)
	}
	return nil
}

// partsOf returns a chunk message's chunks: the parts of a pack, each
// with the pack's call and options, or the chunk itself.
func partsOf(c *pb.Chunk) []*pb.Chunk {
	if len(c.Parts) == 0 {
		return []*pb.Chunk{c}
	}
	out := make([]*pb.Chunk, len(c.Parts))
	mem := make([]pb.Chunk, len(c.Parts))
	for i, pt := range c.Parts {
		m := &mem[i]
		m.Caller, m.Job, m.Task = c.Caller, c.Job, c.Task
		m.TaskTimeoutNs, m.Retries, m.MaxDeliveries = c.TaskTimeoutNs, c.Retries, c.MaxDeliveries
		m.Id, m.Start, m.Count, m.Inputs = pt.Id, pt.Start, pt.Count, pt.Inputs
		out[i] = m
	}
	return out
}

// validToken reports whether s can be a NATS subject token.
func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '.' || ch == '*' || ch == '>' || ch <= ' ' || ch >= 0x7f:
			return false
		}
	}
	return true
}

func trim(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Errors that are not the task's own travel through ipc/remote with their
// identity: the pool's typed errors are registered here.
func init() {
	remote.RegisterType[*pool.WorkerDiedError]()
	remote.RegisterType[*pool.TimeoutError]()
	remote.RegisterType[*PoisonError]()
	remote.Register(pool.ErrTerminated)
	remote.Register(ErrTooLarge)
	remote.Register(ErrPayloadLost)
	remote.Register(pool.ErrClosed)
}

// failureOf encodes a task's error (index counted from its chunk).
func failureOf(idx int, err error) *pb.Failure {
	f := &pb.Failure{Index: uint32(idx), Error: remote.Capture(err)}
	var re *pool.RemoteError
	if errors.As(err, &re) && re == err {
		f.TaskError, f.Pid = true, int64(re.Pid)
	}
	return f
}

// errorOf rebuilds a failure on the caller's side: a *pool.RemoteError
// for the task's own error, else the registered error it was (a
// *pool.WorkerDiedError, *pool.TimeoutError, *PoisonError, a sentinel),
// else an *AgentError carrying its text.
func errorOf(task string, start int, f *pb.Failure, agent string) error {
	rep := remote.Decode(f.GetError())
	if f.GetTaskError() {
		return &pool.RemoteError{Task: task, Index: start + int(f.GetIndex()), Pid: int(f.GetPid()), Report: rep}
	}
	for _, c := range rep.Unwrap() {
		if fmt.Sprintf("%T", c) == rep.Type || c.Error() == rep.Message {
			return c
		}
	}
	return &AgentError{Agent: agent, Task: task, Index: start + int(f.GetIndex()), Report: rep}
}
