// SPDX-License-Identifier: Apache-2.0

// Packs: a Map of many tiny chunks (Chunksize(1) over many tasks) sends
// consecutive chunks together in one message, so that the stream stores,
// delivers and acknowledges one message for several chunks. Each chunk of
// a pack keeps its own id: the agent runs it as its own chunk of its
// local pool and answers it alone, and the caller accepts, tracks and
// fails it alone. A pack whose message is lost, or that turns poison
// (every agent that held it vanished), is split: each of its chunks not
// answered yet is published again alone, so a poison task still fails
// alone.

package cluster

import (
	"errors"
	"time"

	"github.com/multiproc/multiproc/pool"
	pb "github.com/multiproc/multiproc/proto/cluster/v1"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

const (
	// maxPack is the most chunks in a pack.
	maxPack = 64
	// packTasks bounds a chunk that may go in a pack (more tasks: it is
	// worth a message of its own), and packBytes a pack's inputs.
	packTasks = 16
	packBytes = 64 << 10
	// packSpread is how many messages per task the agents run at once a
	// call must still make for its chunks to be packed: a pack runs on
	// one agent, so a call of few chunks keeps one per message and
	// spreads over every agent.
	packSpread = 32
)

// packSize returns how many chunks go in a pack for a batch of n chunks.
func (p *Pool) packSize(n int) int {
	return min(maxPack, n/(packSpread*p.Workers()))
}

// SendBatch implements pool.BatchCall: chunks are sent in packs when
// there are many of them, else one by one.
func (c *call) SendBatch(chunks []pool.ChunkIn) (int, error) {
	k := c.p.packSize(len(chunks))
	for i := 0; i < len(chunks); {
		j, bytes := i, 0
		for j < len(chunks) && j-i < k && chunks[j].N <= packTasks && bytes+len(chunks[j].Inputs) <= packBytes {
			bytes += len(chunks[j].Inputs)
			j++
		}
		if j-i < 2 {
			ch := chunks[i]
			if err := c.Send(ch.Start, ch.N, ch.Inputs); err != nil {
				return i, err
			}
			i++
			continue
		}
		if err := c.sendPack(chunks[i:j]); err != nil {
			return i, err
		}
		i = j
	}
	return len(chunks), nil
}

// packOf is what the chunks of one pack share.
type packOf struct {
	first uint64 // the first chunk's id, which names the message
	parts []*sent
}

// sendPack publishes chunks as one message; each takes a MaxInFlight
// slot, as if sent alone.
func (c *call) sendPack(chunks []pool.ChunkIn) error {
	p := c.p
	taken := 0
	release := func() {
		for range taken {
			<-p.slots
		}
	}
	for range chunks {
		select {
		case p.slots <- struct{}{}:
			taken++
		case <-c.ctx.Done():
			release()
			return c.ctx.Err()
		case <-p.done:
			release()
			return pool.ErrClosed
		}
	}
	p.mu.Lock()
	if stop, err := p.stoppedLocked(c); stop {
		p.mu.Unlock()
		release()
		return err
	}
	first := p.chunkSeq + 1
	p.chunkSeq += uint64(len(chunks))
	p.mu.Unlock()
	m := c.chunkMsg(first, chunks[0].Start, 0, nil)
	pk := &packOf{first: first}
	for i, ch := range chunks {
		id := first + uint64(i)
		m.Count += uint32(ch.N)
		m.Parts = append(m.Parts, &pb.Part{Id: id, Start: uint32(ch.Start), Count: uint32(ch.N), Inputs: ch.Inputs})
		pk.parts = append(pk.parts, &sent{c: c, id: id, start: ch.Start, n: ch.N, inputs: ch.Inputs, pack: pk})
	}
	data, err := proto.Marshal(m)
	if err != nil {
		release()
		return err
	}
	subject, now := taskSubject(p.ns, p.id, c.job, first), time.Now()
	p.mu.Lock()
	if stop, err := p.stoppedLocked(c); stop {
		p.mu.Unlock()
		release()
		return err
	}
	for _, s := range pk.parts {
		s.subject, s.data, s.last = subject, data, now
		p.chunks[s.id] = s
		c.sent[s.id] = s
	}
	p.stats.packs++
	p.mu.Unlock()
	p.publish(pk.parts[0])
	return nil
}

// chunkMsg is a chunk message of this call.
func (c *call) chunkMsg(id uint64, start, n int, inputs []byte) *pb.Chunk {
	p := c.p
	return &pb.Chunk{Caller: p.id, Job: c.job, Id: id, Task: c.task, Start: uint32(start), Count: uint32(n), Inputs: inputs,
		TaskTimeoutNs: int64(p.o.taskTimeout), Retries: uint32(p.o.retries), MaxDeliveries: uint32(p.o.maxDeliver)}
}

// unpackLocked makes a chunk of a pack a chunk of its own, published
// under its own subject from now on (its pack's message was lost, or
// turned poison). Called with p.mu held.
func (p *Pool) unpackLocked(s *sent) {
	if s.pack == nil {
		return
	}
	data, err := proto.Marshal(s.c.chunkMsg(s.id, s.start, s.n, s.inputs))
	if err != nil {
		return // not reached: the pack holding it was encoded
	}
	s.pack, s.subject, s.data = nil, taskSubject(p.ns, p.id, s.c.job, s.id), data
	s.gen++
}

// poisonPart handles a poison answer for a chunk of a pack: the pack
// turned poison, which says nothing yet of this chunk, so it is published
// again alone (the task that killed its agents then fails alone). It
// reports whether it did so.
func (p *Pool) poisonPart(s *sent, r *pb.Result) bool {
	if r.GetAll() == nil {
		return false
	}
	var pe *PoisonError
	if !errors.As(errorOf(s.c.task, s.start, r.GetAll(), r.GetAgent()), &pe) {
		return false
	}
	p.mu.Lock()
	if p.chunks[s.id] != s {
		p.mu.Unlock()
		return true // answered meanwhile
	}
	if s.pack == nil {
		// Split meanwhile (its pack's message was lost): the poison
		// answer is for the pack, not for this chunk alone.
		p.mu.Unlock()
		return true
	}
	p.unpackLocked(s)
	s.last = time.Now()
	p.stats.republished++
	p.mu.Unlock()
	p.log.Info("a pack of chunks turned poison; publishing this chunk of it again alone",
		zap.String("task", s.c.task), zap.Int("start", s.start), zap.Int("count", s.n))
	p.publish(s)
	return true
}
