// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/multiproc/multiproc/internal/base/valenc"
	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/process/starter"
	commonpb "github.com/multiproc/multiproc/proto/common/v1"
	pb "github.com/multiproc/multiproc/proto/pool/v1"
)

// Task is a function registered to run in pool workers, with argument
// type A and result type R. Make one with Register at package level; its
// methods (Map, Imap, ImapUnordered, Apply, Submit, ApplyAsync) run it on
// a Pool or a ThreadPool. A Task is immutable and safe for concurrent use.
type Task[A, R any] struct {
	info *taskInfo
	fn   func(context.Context, A) (R, error)
	in   valenc.Run[A]
	out  valenc.Run[R]
	// outBytes says that R is a byte slice: results may be lent from
	// their chunk's frame (lend.go).
	outBytes bool
}

// Name returns the name the task was registered under.
func (t *Task[A, R]) Name() string { return t.info.name }

// idxErr is the failure of task index (relative to its chunk).
type idxErr struct {
	idx int
	err error
}

// taskInfo is the untyped face of a Task that the pool machinery uses.
type taskInfo struct {
	name string
	// encodeIn appends the encoding of in[i:j] (in is a []A) to dst.
	encodeIn func(dst []byte, in any, i, j int) ([]byte, error)
	// sizeIn returns the length of the encoding of in[i:j] (in is a
	// []A) when it is known without encoding and encoding cannot fail
	// (valenc.Run.Size): such inputs may be encoded when they are sent,
	// straight into shared memory (see chunk.lazy).
	sizeIn func(in any, i, j int) (int, bool)
	// sliceIn returns in[i:j] (in is a []A).
	sliceIn func(in any, i, j int) any
	// decodeOut decodes n results ([]R).
	decodeOut func(b []byte, n int) (any, error)
	// decodeLent is decodeOut for results some of which were lent from
	// their chunk's frame (lend.go).
	decodeLent func(b []byte, n int, frame []byte, spans []uint64) (any, error)
	// decodeIn decodes n inputs ([]A); encodeOut appends the encoding of
	// out (a []R) to dst. Used by Pool.StartCall.
	decodeIn  func(b []byte, n int) (any, error)
	encodeOut func(dst []byte, out any) ([]byte, error)
	// encodeHandles, for a task whose argument carries shm handles, is
	// encodeIn for a process Pool: the handles' descriptors are kept
	// open by keep (the job's) until the job ends.
	encodeHandles func(dst []byte, in any, i, j int, keep *argKeep) ([]byte, error)
	// runEncoded runs a chunk in a worker process, appending the encoded
	// results to dst.
	// With sio, byte slices may be lent from data and the results
	// left to encode later (see sharedIO).
	runEncoded func(ctx context.Context, data []byte, n int, h *runHooks, dst []byte, sio *sharedIO) (out []byte, errs []*pb.TaskError)
	// runLocal runs a chunk in this process (ThreadPool); remote says
	// whether panics are reported like a worker's (always true: a panic
	// never crosses into the caller's goroutine).
	runLocal func(ctx context.Context, in any, h *runHooks) (out any, errs []idxErr)
	// shape, when the argument type carries handles (handles.go), says
	// where; runInit then runs the task once as an Initializer with the
	// argument rebuilt from its plain fields and the handles received.
	shape   *handleShape
	runInit func(ctx context.Context, plain []byte, got []gotHandle) *commonpb.RemoteError
}

// sharedIO is how a chunk of a worker process with SharedMemory uses
// shared memory.
type sharedIO struct {
	// lend says that the chunk's data is a segment's mapping, valid
	// until the chunk's results have been sent: its tasks' byte slices
	// are lent from it (valenc.Run.DecodeShared), not copied.
	lend bool
	// over is the shared-memory threshold: results whose encoding is
	// larger (and whose size is known up front) are not encoded by
	// runEncoded, which sets lazy instead, to be encoded straight into
	// their segment when they are sent.
	over int64
	lazy *lazyOut
	// frame is the chunk's whole frame when lend is set, and handBack
	// hands its segment back to the pool (ipc.Conn.HandBack) and returns
	// the token naming it, or false. When both are set, results that lie
	// in frame are lent (lend.go): runEncoded sets lentSeg and lentSpans.
	frame     []byte
	handBack  func() (uint64, bool)
	lentSeg   uint64
	lentSpans []uint64
}

// lazyOut is a chunk's results to encode later: size bytes, appended by
// appendTo.
type lazyOut struct {
	size     int
	appendTo func(dst []byte) []byte
}

// runHooks tells a chunk's runner how to make each task's context and
// what to report while it runs (in a worker process: see progress.go and
// workerProcess.sendPartial).
type runHooks struct {
	timeout time.Duration
	// onStart, when set, is called before task i starts.
	onStart func(i int)
	// mark, when set, is the worker's progress word: runEncoded stores
	// base|i+1 there as task i starts, base|markChunk when it encodes the
	// results.
	mark *uint64
	base uint64
	// When flush is set and true after a task, and tasks are left, the
	// results of the tasks finished since the last report are given to
	// partial (tasks [from, to) of the chunk, their encoded results and
	// their errors), which reports whether it sent them, and flush is
	// cleared.
	flush   *atomic.Bool
	partial func(from, to int, out []byte, errs []*pb.TaskError) bool
	// first is set by runEncoded to the index of the first task whose
	// results it returns (those before went out through partial).
	first int
}

func (h *runHooks) taskCtx(ctx context.Context, i int) (context.Context, context.CancelFunc) {
	if h == nil {
		return ctx, nil
	}
	if h.onStart != nil {
		h.onStart(i)
	}
	if h.timeout > 0 {
		return context.WithTimeout(ctx, h.timeout)
	}
	return ctx, nil
}

var (
	regMu    sync.RWMutex
	registry = map[string]*taskInfo{}
)

func lookupTask(name string) *taskInfo {
	regMu.RLock()
	defer regMu.RUnlock()
	return registry[name]
}

// Register registers fn under name as a pool task and returns it. Call it
// at package level (var square = pool.Register(...)), never
// conditionally: workers are re-executions of the same binary and find the
// task by name.
//
// A and R travel between processes: plain-old-data types (numbers, bools,
// and arrays and structs of them) as their memory image, strings and
// []byte as they are, anything else with encoding/gob (one gob value per
// chunk of tasks). A value gob cannot encode is an error of that task only.
//
// Register panics when name is empty or already registered, and when it is
// called after process.Init() (from main instead of at package level: the
// workers, which run Init before main's code, would not know the task).
func Register[A, R any](name string, fn func(ctx context.Context, arg A) (R, error)) *Task[A, R] {
	if name == "" {
		panic("pool: Register with an empty name")
	}
	if fn == nil {
		panic(fmt.Sprintf("pool: Register(%q): nil function", name))
	}
	t := &Task[A, R]{fn: fn, in: valenc.RunOf[A](), out: valenc.RunOf[R](), outBytes: valenc.ClassOf(reflect.TypeFor[R]()) == valenc.Bytes}
	t.info = &taskInfo{
		name: name,
		encodeIn: func(dst []byte, in any, i, j int) ([]byte, error) {
			return t.in.Append(dst, in.([]A)[i:j])
		},
		sizeIn: func(in any, i, j int) (int, bool) {
			return t.in.Size(in.([]A)[i:j])
		},
		sliceIn: func(in any, i, j int) any { return in.([]A)[i:j] },
		decodeOut: func(b []byte, n int) (any, error) {
			return t.out.Decode(b, n)
		},
		decodeLent: t.decodeLent,
		decodeIn:   func(b []byte, n int) (any, error) { return t.in.Decode(b, n) },
		encodeOut: func(dst []byte, out any) ([]byte, error) {
			return t.out.Append(dst, out.([]R))
		},
		runEncoded: t.runEncoded,
		runLocal:   t.runLocal,
	}
	if shape, err := shapeOf(reflect.TypeFor[A]()); err != nil || shape != nil {
		// Handles of package shm travel in task arguments (a process
		// pool's; handle_args.go); others reach workers through the
		// Initializer only (see the package documentation, "Handles").
		if err == nil {
			err = ErrHandleArg
		}
		if shape != nil {
			t.info.shape, t.info.runInit = shape, t.runInitWithHandles
			if shape.shmOnly() {
				t.info.encodeHandles = func(dst []byte, in any, i, j int, keep *argKeep) ([]byte, error) {
					return appendArgHandles(dst, shape, reflect.ValueOf(in.([]A)[i:j]), keep)
				}
			}
		}
		if t.info.encodeHandles != nil {
			err = fmt.Errorf("%w: shared-memory handles travel in the task arguments of a process Pool only (same host)", ErrHandleArg)
		}
		t.info.sizeIn = func(any, int, int) (int, bool) { return 0, false }
		t.info.encodeIn = func([]byte, any, int, int) ([]byte, error) {
			return nil, fmt.Errorf("pool: task %q: argument type %v: %w", name, reflect.TypeFor[A](), err)
		}
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("pool: Register(%q): name already registered", name))
	}
	if starter.AfterInit() {
		panic(fmt.Sprintf("pool: Register(%q) called after process.Init(): register tasks at package level "+
			"(var t = pool.Register(...)), so that the worker processes, which run process.Init() before main's code, know them too", name))
	}
	registry[name] = t.info
	return t
}

// Args2 holds the two arguments of a task registered with Register2.
type Args2[A, B any] struct {
	A A
	B B
}

// Register2 registers a task of two arguments. Its input type is
// Args2[A, B]: Map over a []Args2 is Python's starmap (see Starmap).
func Register2[A, B, R any](name string, fn func(ctx context.Context, a A, b B) (R, error)) *Task[Args2[A, B], R] {
	if fn == nil {
		panic(fmt.Sprintf("pool: Register2(%q): nil function", name))
	}
	return Register(name, func(ctx context.Context, args Args2[A, B]) (R, error) {
		return fn(ctx, args.A, args.B)
	})
}

// Args3 holds the three arguments of a task registered with Register3.
type Args3[A, B, C any] struct {
	A A
	B B
	C C
}

// Register3 registers a task of three arguments; its input type is
// Args3[A, B, C] (see Starmap).
func Register3[A, B, C, R any](name string, fn func(ctx context.Context, a A, b B, c C) (R, error)) *Task[Args3[A, B, C], R] {
	if fn == nil {
		panic(fmt.Sprintf("pool: Register3(%q): nil function", name))
	}
	return Register(name, func(ctx context.Context, args Args3[A, B, C]) (R, error) {
		return fn(ctx, args.A, args.B, args.C)
	})
}

// Args4 holds the four arguments of a task registered with Register4.
// For more, register a task of one struct argument: Map over a slice of
// it is a starmap.
type Args4[A, B, C, D any] struct {
	A A
	B B
	C C
	D D
}

// Register4 registers a task of four arguments; its input type is
// Args4[A, B, C, D] (see Starmap).
func Register4[A, B, C, D, R any](name string, fn func(ctx context.Context, a A, b B, c C, d D) (R, error)) *Task[Args4[A, B, C, D], R] {
	if fn == nil {
		panic(fmt.Sprintf("pool: Register4(%q): nil function", name))
	}
	return Register(name, func(ctx context.Context, args Args4[A, B, C, D]) (R, error) {
		return fn(ctx, args.A, args.B, args.C, args.D)
	})
}

// call runs fn(ctx, a), turning a panic into a RemoteError with the stack.
func call[A, R any](ctx context.Context, fn func(context.Context, A) (R, error), a A) (r R, perr *commonpb.RemoteError, err error) {
	returned := false
	defer func() {
		if returned {
			return
		}
		perr = remote.CapturePanic(recover())
	}()
	r, err = fn(ctx, a)
	returned = true
	return r, nil, err
}

// runEncoded is the worker side of a chunk.
func (t *Task[A, R]) runEncoded(ctx context.Context, data []byte, n int, h *runHooks, dst []byte, sio *sharedIO) ([]byte, []*pb.TaskError) {
	var ins []A
	var err error
	switch {
	case t.info.encodeHandles != nil:
		// Handles attached for the chunk are closed when it returns, so
		// its results are encoded here, not when they are sent.
		var closeAll func()
		ins, closeAll, err = decodeArgs[A](t.info.shape, data, n)
		defer closeAll()
		sio = nil
	case sio != nil && sio.lend:
		ins, err = t.in.DecodeShared(data, n)
	default:
		ins, err = t.in.Decode(data, n)
	}
	if err != nil {
		re := remote.Errorf("%w: decoding the arguments: %w", ErrEncode, err)
		errs := make([]*pb.TaskError, n)
		for i := range errs {
			errs[i] = &pb.TaskError{Index: uint32(i), Error: re}
		}
		return nil, errs
	}
	outs := make([]R, n)
	var errs []*pb.TaskError
	from, efrom := 0, 0 // the first task, and error, not yet reported
	// The hooks' hot fields, in locals: the loop is a few nanoseconds a
	// task with tiny tasks.
	var mark *uint64
	var base uint64
	var flush *atomic.Bool
	slow := false // a context per task
	if h != nil {
		mark, base, flush = h.mark, h.base, h.flush
		slow = h.onStart != nil || h.timeout > 0
	}
	for i := range ins {
		if err := ctx.Err(); err != nil {
			errs = append(errs, &pb.TaskError{Index: uint32(i), Error: remote.Capture(err)})
			continue
		}
		if mark != nil {
			*mark = base | uint64(i+1)
		}
		tctx, cancel := ctx, context.CancelFunc(nil)
		if slow {
			tctx, cancel = h.taskCtx(ctx, i)
		}
		r, perr, err := call(tctx, t.fn, ins[i])
		if cancel != nil {
			cancel()
		}
		switch {
		case perr != nil:
			errs = append(errs, &pb.TaskError{Index: uint32(i), Error: perr})
		case err != nil:
			errs = append(errs, &pb.TaskError{Index: uint32(i), Error: remote.Capture(err)})
		default:
			outs[i] = r
		}
		if flush != nil && flush.Load() && i+1 < n {
			flush.Store(false)
			// A part whose results cannot be encoded is left to the final
			// result, which finds the culprits.
			if b, err := t.out.Append(nil, outs[from:i+1]); err == nil && h.partial(from, i+1, b, errs[efrom:]) {
				from, efrom = i+1, len(errs)
			}
		}
	}
	if h != nil {
		if h.mark != nil {
			*h.mark = h.base | markChunk
		}
		h.first = from
	}
	outs, errs = outs[from:], errs[efrom:]
	if sio != nil && sio.lend && sio.handBack != nil && t.outBytes {
		lendResults(outs, sio)
	}
	if sio != nil && sio.over > 0 {
		if size, ok := t.out.Size(outs); ok && int64(size) > sio.over {
			sio.lazy = &lazyOut{size: size, appendTo: func(dst []byte) []byte {
				b, _ := t.out.Append(dst, outs) // cannot fail (Size)
				return b
			}}
			return nil, errs
		}
	}
	out, err := t.out.Append(dst, outs)
	if err == nil {
		return out, errs
	}
	// Find the results that cannot be encoded: they fail alone.
	var zero R
	for i := range outs {
		if _, e := t.out.Append(nil, outs[i:i+1]); e != nil {
			outs[i] = zero
			errs = append(errs, &pb.TaskError{Index: uint32(from + i), Error: remote.Errorf("%w: sending result %.200v: %w", ErrEncode, any(outs[i]), e)})
		}
	}
	out, err = t.out.Append(dst[:0], outs)
	if err != nil {
		re := remote.Errorf("%w: encoding the results: %w", ErrEncode, err)
		errs = errs[:0]
		for i := range outs {
			errs = append(errs, &pb.TaskError{Index: uint32(from + i), Error: re})
		}
		return nil, errs
	}
	return out, errs
}

// runLocal is a ThreadPool worker's side of a chunk: errors are returned
// as the task returned them (not wrapped), panics as *RemoteError.
func (t *Task[A, R]) runLocal(ctx context.Context, in any, h *runHooks) (any, []idxErr) {
	ins := in.([]A)
	outs := make([]R, len(ins))
	var errs []idxErr
	for i := range ins {
		if err := ctx.Err(); err != nil {
			errs = append(errs, idxErr{i, err})
			continue
		}
		tctx, cancel := h.taskCtx(ctx, i)
		r, perr, err := call(tctx, t.fn, ins[i])
		if cancel != nil {
			cancel()
		}
		switch {
		case perr != nil:
			errs = append(errs, idxErr{i, &RemoteError{Task: t.info.name, Index: i, Pid: selfPid, Report: remote.Decode(perr)}})
		case err != nil:
			errs = append(errs, idxErr{i, err})
		default:
			outs[i] = r
		}
	}
	return outs, errs
}
