// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"errors"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/multiproc/multiproc/proto/pool/v1"
)

// The hot messages (a Chunk going to a worker, a Result coming back) are
// encoded and decoded by hand with protowire: the same bytes as the
// generated code (proto/pool/v1), several times faster, with no
// reflection. The rare messages use the generated code. The fuzz tests
// check both against each other.

// Field numbers of proto/pool/v1/pool.proto.
const (
	fToWorkerChunk    = 1
	fToWorkerCancel   = 2
	fToWorkerStop     = 3
	fCancelJob        = 1
	fConfigInit       = 1
	fConfigInitInput  = 2
	fConfigTimeout    = 3
	fFromWorkerReady  = 1
	fReadyPid         = 1
	fChunkSeq         = 1
	fChunkJob         = 2
	fChunkTask        = 3
	fChunkCount       = 4
	fChunkInputs      = 5
	fFromWorkerResult = 2
	fResultSeq        = 1
	fResultOutputs    = 2
	fResultErrors     = 3
	fResultCancelled  = 4
	fResultOffset     = 5
	fResultCount      = 6
	fResultLentSeg    = 7
	fResultLentSpans  = 8
)

var errBadMessage = errors.New("pool: malformed message")

// appendChunk appends an encoded ToWorker{chunk}.
func appendChunk(b []byte, seq, job uint64, task string, count int, inputs []byte) []byte {
	b = appendChunkHead(b, seq, job, task, count, len(inputs))
	return append(b, inputs...)
}

// chunkHeadroom is room enough before a chunk's encoded inputs for the
// rest of its frame (appendChunkHead), so that a large chunk is framed in
// place, without copying its inputs.
func chunkHeadroom(task string) int { return 72 + len(task) }

// appendChunkHead appends an encoded ToWorker{chunk} but for the bytes of
// its inputs (ninputs of them), which come last.
func appendChunkHead(b []byte, seq, job uint64, task string, count, ninputs int) []byte {
	n := protowire.SizeTag(fChunkSeq) + protowire.SizeVarint(seq) +
		protowire.SizeTag(fChunkJob) + protowire.SizeVarint(job) +
		protowire.SizeTag(fChunkTask) + protowire.SizeBytes(len(task)) +
		protowire.SizeTag(fChunkCount) + protowire.SizeVarint(uint64(count))
	if ninputs > 0 {
		n += protowire.SizeTag(fChunkInputs) + protowire.SizeBytes(ninputs)
	}
	b = protowire.AppendTag(b, fToWorkerChunk, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = protowire.AppendTag(b, fChunkSeq, protowire.VarintType)
	b = protowire.AppendVarint(b, seq)
	b = protowire.AppendTag(b, fChunkJob, protowire.VarintType)
	b = protowire.AppendVarint(b, job)
	b = protowire.AppendTag(b, fChunkTask, protowire.BytesType)
	b = protowire.AppendString(b, task)
	b = protowire.AppendTag(b, fChunkCount, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(count))
	if ninputs > 0 {
		b = protowire.AppendTag(b, fChunkInputs, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(ninputs))
	}
	return b
}

// chunkMsg is a decoded Chunk; inputs aliases the frame.
type chunkMsg struct {
	seq, job uint64
	task     string
	count    uint32
	inputs   []byte
	order    uint32 // set by the worker: the chunk's number among those it received
	shared   bool   // set by the worker: inputs is in a shared-memory segment (see sharedIO)
	frame    []byte // set by the worker when shared: the whole frame (see sharedIO.frame)
}

// parseToWorker decodes a ToWorker frame: a chunk by hand (ok true), any
// other message with the generated code (m).
func parseToWorker(b []byte) (c chunkMsg, isChunk bool, m *pb.ToWorker, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n > 0 && num == fToWorkerChunk && typ == protowire.BytesType {
		body, k := protowire.ConsumeBytes(b[n:])
		if k >= 0 && n+k == len(b) {
			if c, err := parseChunk(body); err == nil {
				return c, true, nil, nil
			}
		}
	}
	m = new(pb.ToWorker)
	if err := proto.Unmarshal(b, m); err != nil {
		return c, false, nil, err
	}
	if ch := m.GetChunk(); ch != nil {
		return chunkMsg{seq: ch.Seq, job: ch.Job, task: ch.Task, count: ch.Count, inputs: ch.Inputs}, true, nil, nil
	}
	return c, false, m, nil
}

func parseChunk(b []byte) (c chunkMsg, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return c, errBadMessage
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && (num == fChunkSeq || num == fChunkJob || num == fChunkCount):
			v, k := protowire.ConsumeVarint(b)
			if k < 0 {
				return c, errBadMessage
			}
			switch num {
			case fChunkSeq:
				c.seq = v
			case fChunkJob:
				c.job = v
			default:
				c.count = uint32(v)
			}
			b = b[k:]
		case typ == protowire.BytesType && (num == fChunkTask || num == fChunkInputs):
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return c, errBadMessage
			}
			if num == fChunkTask {
				if !utf8.Valid(v) {
					return c, errBadMessage
				}
				c.task = string(v)
			} else {
				c.inputs = v
			}
			b = b[k:]
		default:
			// Unknown field or unexpected type: let the generated code
			// judge.
			return c, errBadMessage
		}
	}
	return c, nil
}

// appendResult appends an encoded FromWorker{result}. It covers the
// tasks of the chunk from offset on: count of them (a partial result), or
// all the rest when count is 0.
func appendResult(b []byte, seq uint64, off, count uint32, outputs []byte, errs []*pb.TaskError, cancelled bool) ([]byte, error) {
	return appendFinalResult(b, seq, off, count, outputs, errs, cancelled, 0, nil)
}

// appendFinalResult is appendResult with results lent from the chunk's
// frame (resultFrame.lend; a final result only, count 0).
func appendFinalResult(b []byte, seq uint64, off, count uint32, outputs []byte, errs []*pb.TaskError, cancelled bool, lentSeg uint64, lentSpans []uint64) ([]byte, error) {
	r, err := newResultFrame(seq, off, count, len(outputs), errs, cancelled)
	if err != nil {
		return b, err
	}
	r.lend(lentSeg, lentSpans)
	return r.appendTo(b, func(b []byte) []byte { return append(b, outputs...) }), nil
}

// resultFrame is a FromWorker{result} whose fields but the outputs are
// known and whose outputs are appended when it is written (a large
// result, encoded straight into the shared memory it travels in).
type resultFrame struct {
	seq        uint64
	off, count uint32
	nout       int // the outputs' size
	errBytes   [][]byte
	cancelled  bool
	lentSeg    uint64   // see lend
	lentSpans  []uint64 // see lend
	lentSize   int      // lentSpans packed, in bytes
	body       int      // the Result message's size
}

func newResultFrame(seq uint64, off, count uint32, nout int, errs []*pb.TaskError, cancelled bool) (resultFrame, error) {
	r := resultFrame{seq: seq, off: off, count: count, nout: nout, cancelled: cancelled}
	n := protowire.SizeTag(fResultSeq) + protowire.SizeVarint(seq)
	if nout > 0 {
		n += protowire.SizeTag(fResultOutputs) + protowire.SizeBytes(nout)
	}
	for _, e := range errs {
		eb, err := proto.Marshal(e)
		if err != nil {
			return r, err
		}
		r.errBytes = append(r.errBytes, eb)
		n += protowire.SizeTag(fResultErrors) + protowire.SizeBytes(len(eb))
	}
	if cancelled {
		n += protowire.SizeTag(fResultCancelled) + 1
	}
	if off > 0 {
		n += protowire.SizeTag(fResultOffset) + protowire.SizeVarint(uint64(off))
	}
	if count > 0 {
		n += protowire.SizeTag(fResultCount) + protowire.SizeVarint(uint64(count))
	}
	r.body = n
	return r, nil
}

// lend adds results lent from the chunk's frame (see lendResults): the
// token naming the segment the worker handed back, and three numbers per
// result (index, offset, length). Nothing when spans is empty.
func (r *resultFrame) lend(token uint64, spans []uint64) {
	if len(spans) == 0 {
		return
	}
	r.lentSeg, r.lentSpans, r.lentSize = token, spans, 0
	for _, v := range spans {
		r.lentSize += protowire.SizeVarint(v)
	}
	r.body += protowire.SizeTag(fResultLentSeg) + protowire.SizeFixed64() +
		protowire.SizeTag(fResultLentSpans) + protowire.SizeBytes(r.lentSize)
}

// size is the length of the encoded frame.
func (r *resultFrame) size() int {
	return protowire.SizeTag(fFromWorkerResult) + protowire.SizeBytes(r.body)
}

// appendTo appends the encoded frame to b; outputs appends exactly
// r.nout bytes of outputs.
func (r *resultFrame) appendTo(b []byte, outputs func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, fFromWorkerResult, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(r.body))
	b = protowire.AppendTag(b, fResultSeq, protowire.VarintType)
	b = protowire.AppendVarint(b, r.seq)
	if r.nout > 0 {
		b = protowire.AppendTag(b, fResultOutputs, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(r.nout))
		b = outputs(b)
	}
	for _, eb := range r.errBytes {
		b = protowire.AppendTag(b, fResultErrors, protowire.BytesType)
		b = protowire.AppendBytes(b, eb)
	}
	if r.cancelled {
		b = protowire.AppendTag(b, fResultCancelled, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if r.off > 0 {
		b = protowire.AppendTag(b, fResultOffset, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.off))
	}
	if r.count > 0 {
		b = protowire.AppendTag(b, fResultCount, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.count))
	}
	if len(r.lentSpans) > 0 {
		b = protowire.AppendTag(b, fResultLentSeg, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, r.lentSeg)
		b = protowire.AppendTag(b, fResultLentSpans, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(r.lentSize))
		for _, v := range r.lentSpans {
			b = protowire.AppendVarint(b, v)
		}
	}
	return b
}

// resultMsg is a decoded Result; outputs aliases the frame.
type resultMsg struct {
	seq       uint64
	outputs   []byte
	errs      []*pb.TaskError
	cancelled bool
	off       uint32 // the first task covered
	count     uint32 // tasks covered by a partial result; 0 for the final one
	// Results lent from the chunk's frame (see resultFrame.lend).
	lentSeg   uint64
	lentSpans []uint64
}

// parseFromWorker decodes a FromWorker frame: a result by hand (isResult
// true), any other message with the generated code (m).
func parseFromWorker(b []byte) (r resultMsg, isResult bool, m *pb.FromWorker, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n > 0 && num == fFromWorkerResult && typ == protowire.BytesType {
		body, k := protowire.ConsumeBytes(b[n:])
		if k >= 0 && n+k == len(b) {
			if r, err := parseResult(body); err == nil {
				return r, true, nil, nil
			}
		}
	}
	m = new(pb.FromWorker)
	if err := proto.Unmarshal(b, m); err != nil {
		return r, false, nil, err
	}
	if res := m.GetResult(); res != nil {
		return resultMsg{seq: res.Seq, outputs: res.Outputs, errs: res.Errors, cancelled: res.Cancelled, off: res.Offset, count: res.Count,
			lentSeg: res.LentSegment, lentSpans: res.LentSpans}, true, nil, nil
	}
	return r, false, m, nil
}

func parseResult(b []byte) (r resultMsg, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return r, errBadMessage
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && (num == fResultSeq || num == fResultCancelled || num == fResultOffset || num == fResultCount):
			v, k := protowire.ConsumeVarint(b)
			if k < 0 {
				return r, errBadMessage
			}
			switch num {
			case fResultSeq:
				r.seq = v
			case fResultCancelled:
				r.cancelled = v != 0
			case fResultOffset:
				r.off = uint32(v)
			default:
				r.count = uint32(v)
			}
			b = b[k:]
		case typ == protowire.BytesType && (num == fResultOutputs || num == fResultErrors):
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return r, errBadMessage
			}
			if num == fResultOutputs {
				r.outputs = v
			} else {
				te := new(pb.TaskError)
				if err := proto.Unmarshal(v, te); err != nil {
					return r, err
				}
				r.errs = append(r.errs, te)
			}
			b = b[k:]
		case typ == protowire.Fixed64Type && num == fResultLentSeg:
			v, k := protowire.ConsumeFixed64(b)
			if k < 0 {
				return r, errBadMessage
			}
			r.lentSeg = v
			b = b[k:]
		case typ == protowire.BytesType && num == fResultLentSpans:
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return r, errBadMessage
			}
			for len(v) > 0 {
				x, j := protowire.ConsumeVarint(v)
				if j < 0 {
					return r, errBadMessage
				}
				r.lentSpans = append(r.lentSpans, x)
				v = v[j:]
			}
			b = b[k:]
		default:
			return r, errBadMessage
		}
	}
	return r, nil
}

// The worker's own messages are coded by hand too, so that a worker never
// pays the protobuf runtime's lazy initialisation (about a millisecond)
// unless a task fails.

// toWorkerMsg is a decoded ToWorker that is not a chunk.
type toWorkerMsg struct {
	cancel bool
	job    uint64
	stop   bool
}

// parseControl decodes a Cancel or Stop frame by hand.
func parseControl(b []byte) (m toWorkerMsg, ok bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || typ != protowire.BytesType || (num != fToWorkerCancel && num != fToWorkerStop) {
		return m, false
	}
	body, k := protowire.ConsumeBytes(b[n:])
	if k < 0 || n+k != len(b) {
		return m, false
	}
	if num == fToWorkerStop {
		return toWorkerMsg{stop: true}, len(body) == 0
	}
	m.cancel = true
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 || num != fCancelJob || typ != protowire.VarintType {
			return m, false
		}
		v, k := protowire.ConsumeVarint(body[n:])
		if k < 0 {
			return m, false
		}
		m.job = v
		body = body[n+k:]
	}
	return m, true
}

// parseConfig decodes a WorkerConfig by hand, falling back to the
// generated code for anything unexpected.
func parseConfig(b []byte) (cfg workerConfig, err error) {
	rest := b
	for len(rest) > 0 {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			break
		}
		rest = rest[n:]
		switch {
		case (num == fConfigInit || num == fConfigInitInput) && typ == protowire.BytesType:
			v, k := protowire.ConsumeBytes(rest)
			if k < 0 {
				return cfg, errBadMessage
			}
			if num == fConfigInit {
				if !utf8.Valid(v) {
					return cfg, errBadMessage
				}
				cfg.initializer = string(v)
			} else {
				cfg.initInput = v
			}
			rest = rest[k:]
		case num == fConfigTimeout && typ == protowire.VarintType:
			v, k := protowire.ConsumeVarint(rest)
			if k < 0 {
				return cfg, errBadMessage
			}
			cfg.timeout = int64(v)
			rest = rest[k:]
		default:
			var m pb.WorkerConfig
			if err := proto.Unmarshal(b, &m); err != nil {
				return cfg, err
			}
			return workerConfig{m.Initializer, m.InitializerInput, m.TaskTimeoutNs}, nil
		}
	}
	if len(rest) > 0 {
		return cfg, errBadMessage
	}
	return cfg, nil
}

type workerConfig struct {
	initializer string
	initInput   []byte
	timeout     int64
}

// appendReady appends an encoded FromWorker{ready} without an error.
func appendReady(b []byte, pid int) []byte {
	n := protowire.SizeTag(fReadyPid) + protowire.SizeVarint(uint64(pid))
	b = protowire.AppendTag(b, fFromWorkerReady, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = protowire.AppendTag(b, fReadyPid, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(pid))
}
