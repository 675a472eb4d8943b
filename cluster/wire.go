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
	return c, nil
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
