// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/pool"
	pb "github.com/multiproc/multiproc/proto/cluster/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// Payloads of any size. A chunk whose message would be over the server's
// maximum payload (max_payload, 1 MiB by default, less headerRoom) puts
// its inputs in the build's big-payload bucket, a JetStream Object Store,
// and its message carries an ObjectRef instead:
//
//	bucket  MPC_BIG_<ns>                      (stream OBJ_MPC_BIG_<ns>)
//	object  <caller>.<job>.<chunk>.in         a chunk's inputs
//	object  <caller>.<job>.<chunk>.out.<agent> a chunk's outputs
//
// An agent reads the inputs before it runs the chunk, and puts outputs
// that do not fit in a result message the same way. The caller removes
// both once the chunk's result is in (before it delivers it), the
// objects of chunks that end otherwise (a cancelled call, a failed
// publish) at once, and what is left of its own on Close. The objects of
// a caller that died are removed by the agents when they purge its
// chunks (the caller-liveness cleanup), and the bucket's MaxAge (the
// task stream's, StreamLimits) bounds whatever escapes both.
//
// The message is acknowledged only once its result is published, as
// for any chunk: an agent killed while it reads, runs or writes leaves
// the chunk to be delivered again, and its inputs object is still there.

const (
	// headerRoom is what a message leaves to its headers (a publish's
	// Nats-Msg-Id) under the server's maximum payload.
	headerRoom = 4 << 10
	// maxObjectSize bounds a big payload: the largest frame a worker
	// process accepts (a chunk's inputs reach it in one frame).
	maxObjectSize = ipc.DefaultMaxFrameSize
	// maxDigest bounds an ObjectRef's digest ("SHA-256=" and base64).
	maxDigest = 128
	// objectChunkSize is the size of the messages an object is stored
	// in.
	objectChunkSize = 256 << 10
)

func bigBucket(ns string) string { return "MPC_BIG_" + ns }

func inputsObject(caller string, job, id uint64) string {
	return caller + "." + u64(job) + "." + u64(id) + ".in"
}

func outputsObject(caller string, job, id uint64, agent string) string {
	return caller + "." + u64(job) + "." + u64(id) + ".out." + agent
}

// msgLimit is the size of the largest message sent as it is.
func msgLimit(nc *nats.Conn) int { return int(nc.MaxPayload()) - headerRoom }

// checkRef checks an ObjectRef taken from a message: it must name the
// object want, with a size a big payload can have.
func checkRef(ref *pb.ObjectRef, want string) error {
	switch {
	case ref.GetName() != want:
		return fmt.Errorf("%w: object reference %q, want %q", errBadChunk, trim(ref.GetName()), want)
	case ref.GetSize() == 0 || ref.GetSize() > uint64(maxObjectSize):
		return fmt.Errorf("%w: object reference of %d bytes", errBadChunk, ref.GetSize())
	case len(ref.GetDigest()) > maxDigest:
		return fmt.Errorf("%w: object digest of %d bytes", errBadChunk, len(ref.GetDigest()))
	}
	return nil
}

// checkInputsRef checks a chunk's InputsRef (decodeChunk).
func checkInputsRef(c *pb.Chunk) error {
	if c.GetInputsRef() == nil {
		return nil
	}
	if len(c.GetInputs()) > 0 {
		return fmt.Errorf("%w: inputs both inline and in an object", errBadChunk)
	}
	return checkRef(c.GetInputsRef(), inputsObject(c.GetCaller(), c.GetJob(), c.GetId()))
}

// checkOutputsRef checks a result's OutputsRef on the caller's side.
func checkOutputsRef(r *pb.Result, caller string) error {
	if r.GetOutputsRef() == nil {
		return nil
	}
	if len(r.GetOutputs()) > 0 {
		return fmt.Errorf("%w: outputs both inline and in an object", errBadChunk)
	}
	if ag := r.GetAgent(); ag == "" || len(ag) > maxCallerID || !validToken(ag) {
		return fmt.Errorf("%w: bad agent id %q", errBadChunk, trim(ag))
	}
	return checkRef(r.GetOutputsRef(), outputsObject(caller, r.GetJob(), r.GetId(), r.GetAgent()))
}

// bigStore is the build's big-payload bucket, opened (or created) on
// first use.
type bigStore struct {
	js       jetstream.JetStream
	bucket   string
	ttl      time.Duration
	maxBytes int64
	replicas int
	own      bool // this process owns the server: create or update

	mu     sync.Mutex
	obs    jetstream.ObjectStore
	stream jetstream.Stream
}

func newBigStore(js jetstream.JetStream, ns string, o *options, own bool) *bigStore {
	return &bigStore{js: js, bucket: bigBucket(ns), ttl: o.maxAge, maxBytes: o.maxBytes, replicas: max(o.replicas, 1), own: own}
}

// open returns the bucket; with create, it creates it when it does not
// exist. Without, a missing bucket is jetstream.ErrBucketNotFound.
func (b *bigStore) open(ctx context.Context, create bool) (jetstream.ObjectStore, jetstream.Stream, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.obs != nil {
		return b.obs, b.stream, nil
	}
	cfg := jetstream.ObjectStoreConfig{Bucket: b.bucket, TTL: b.ttl, MaxBytes: b.maxBytes, Storage: jetstream.FileStorage,
		Replicas: b.replicas, Description: "multiproc cluster: chunks and results over the maximum message size"}
	var obs jetstream.ObjectStore
	var err error
	switch {
	case create && b.own:
		obs, err = b.js.CreateOrUpdateObjectStore(ctx, cfg)
	default:
		obs, err = b.js.ObjectStore(ctx, b.bucket)
		if create && errors.Is(err, jetstream.ErrBucketNotFound) {
			obs, err = b.js.CreateObjectStore(ctx, cfg)
			if errors.Is(err, jetstream.ErrBucketExists) {
				obs, err = b.js.ObjectStore(ctx, b.bucket)
			}
		}
	}
	if err != nil {
		return nil, nil, err
	}
	st, err := b.js.Stream(ctx, "OBJ_"+b.bucket)
	if err != nil {
		return nil, nil, err
	}
	b.obs, b.stream = obs, st
	return obs, st, nil
}

// put stores data as the object name.
func (b *bigStore) put(ctx context.Context, name string, data []byte) (*pb.ObjectRef, error) {
	if len(data) > int(maxObjectSize) {
		return nil, fmt.Errorf("%d bytes are over the largest payload (%d)", len(data), maxObjectSize)
	}
	var info *jetstream.ObjectInfo
	for attempt := 0; ; attempt++ {
		obs, _, err := b.open(ctx, true)
		if err != nil {
			return nil, fmt.Errorf("the big-payload bucket %s: %w", b.bucket, err)
		}
		info, err = obs.Put(ctx, jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: objectChunkSize}}, bytes.NewReader(data))
		if attempt == 0 && statusGone(err) {
			// Deleted since it was opened (by an operator, or lost
			// with a server): create it again (the errors are those
			// of the status bucket gone).
			b.forget()
			continue
		}
		if err == nil {
			break
		}
		// Put purges the chunks it wrote, but its meta message may have
		// been stored while chunks were refused.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		b.remove(rctx, name)
		cancel()
		return nil, fmt.Errorf("putting object %s: %w", name, err)
	}
	return &pb.ObjectRef{Name: name, Size: info.Size, Digest: info.Digest}, nil
}

// forget drops the opened bucket: the next open looks it up again.
func (b *bigStore) forget() {
	b.mu.Lock()
	b.obs, b.stream = nil, nil
	b.mu.Unlock()
}

// transferTimeout bounds the read of n bytes (2 MiB/s, and 10 s more):
// a read of an object removed meanwhile (its chunk was answered by
// another agent) stalls until then.
func transferTimeout(n uint64) time.Duration {
	return 10*time.Second + time.Duration(n>>21)*time.Second
}

// errUnreachable marks a failure to read an object that may pass (the
// server does not answer now), as opposed to ErrPayloadLost.
var errUnreachable = errors.New("cluster: the big-payload bucket does not answer")

// get reads the object ref names, checking it is the one ref describes.
// Its error wraps ErrPayloadLost when the object is missing or not that
// one, errUnreachable otherwise (or ctx's error).
func (b *bigStore) get(ctx context.Context, ref *pb.ObjectRef) ([]byte, error) {
	// Without a deadline, jetstream would bound the whole read by its
	// default API timeout (5s), whatever the object's size. A read past
	// this bound is errUnreachable, not the caller's ctx error.
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, transferTimeout(ref.GetSize()))
	defer cancel()
	lost := func(format string, a ...any) error {
		return fmt.Errorf("%w: object %s: %s", ErrPayloadLost, ref.GetName(), fmt.Sprintf(format, a...))
	}
	other := func(err error) error {
		if parent.Err() != nil {
			return parent.Err()
		}
		return fmt.Errorf("%w: object %s: %w", errUnreachable, ref.GetName(), err)
	}
	obs, _, err := b.open(ctx, false)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, lost("the bucket %s does not exist", b.bucket)
	}
	if err != nil {
		return nil, other(err)
	}
	res, err := obs.Get(ctx, ref.GetName())
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return nil, lost("not in the bucket (removed behind the pool's back?)")
	case errors.Is(err, jetstream.ErrBadObjectMeta):
		return nil, lost("%v", err)
	case err != nil:
		return nil, other(err)
	}
	defer res.Close()
	info, err := res.Info()
	if err != nil {
		return nil, other(err)
	}
	if info.Size != ref.GetSize() || info.Digest != ref.GetDigest() {
		return nil, lost("the bucket holds %d bytes (%s), the message names %d bytes (%s)",
			info.Size, trim(info.Digest), ref.GetSize(), trim(ref.GetDigest()))
	}
	data := make([]byte, info.Size)
	if _, err := io.ReadFull(res, data); err != nil {
		return nil, readErr(err, lost, other)
	}
	// The digest is checked when the reader reaches the end.
	var one [1]byte
	if n, err := res.Read(one[:]); n > 0 || err != io.EOF {
		if err == nil {
			return nil, lost("longer than its %d bytes", info.Size)
		}
		return nil, readErr(err, lost, other)
	}
	return data, nil
}

func readErr(err error, lost func(string, ...any) error, other func(error) error) error {
	if errors.Is(err, jetstream.ErrDigestMismatch) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return lost("%v", err)
	}
	return other(err)
}

// remove removes objects and their marks: the object's chunks, then its
// meta message (jetstream's Delete leaves a deletion mark in the stream
// for each name; the names here are used once, so none is kept).
// Missing objects are no error.
func (b *bigStore) remove(ctx context.Context, names ...string) error {
	obs, st, err := b.open(ctx, false)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		info, err := obs.GetInfo(ctx, name, jetstream.GetObjectInfoShowDeleted())
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// The subjects of the Object Store's layout (ADR-20):
		// $O.<bucket>.C.<nuid> and $O.<bucket>.M.<base64url(name)>.
		if info.NUID != "" {
			if err := st.Purge(ctx, jetstream.WithPurgeSubject("$O."+b.bucket+".C."+info.NUID)); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		meta := "$O." + b.bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(name))
		if err := st.Purge(ctx, jetstream.WithPurgeSubject(meta)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removePrefix removes the objects whose names start with prefix (a
// caller's, a job's).
func (b *bigStore) removePrefix(ctx context.Context, prefix string) error {
	obs, _, err := b.open(ctx, false)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	infos, err := obs.List(ctx, jetstream.ListObjectsShowDeleted())
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var names []string
	for _, info := range infos {
		if strings.HasPrefix(info.Name, prefix) {
			names = append(names, info.Name)
		}
	}
	return b.remove(ctx, names...)
}

// --- the caller's side ---

// encodeChunk encodes a chunk message; inputs over the maximum message
// size go to the big-payload bucket first (m then holds the reference
// instead), and object names the object. The pool's life and ctx bound
// the put.
func (p *Pool) encodeChunk(ctx context.Context, m *pb.Chunk) (data []byte, object string, err error) {
	size := proto.Size(m)
	if size <= msgLimit(p.nc) {
		data, err = proto.Marshal(m)
		return data, "", err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.life, cancel)()
	name := inputsObject(m.Caller, m.Job, m.Id)
	ref, err := p.big.put(ctx, name, m.Inputs)
	if err != nil {
		if ctx.Err() != nil {
			if p.life.Err() != nil {
				return nil, "", pool.ErrClosed
			}
			return nil, "", ctx.Err()
		}
		// Nothing of it is left behind: Put purges what it wrote.
		return nil, "", fmt.Errorf("%w: task %s[%d..%d]: a chunk of %d bytes is over the server's maximum message size (%d), and the object store did not take it: %w",
			ErrTooLarge, m.Task, m.Start, m.Start+m.Count-1, size, p.nc.MaxPayload(), err)
	}
	m.Inputs, m.InputsRef = nil, ref
	data, err = proto.Marshal(m)
	return data, name, err
}

// bigResult finishes a chunk whose inputs or outputs are objects, on its
// own goroutine: it reads the outputs, removes the objects, then
// delivers the result. The chunk stays tracked (reading) until then, so
// a duplicate result meanwhile is dropped.
func (p *Pool) bigResult(s *sent, r *pb.Result) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(p.life, 10*time.Minute)
	defer cancel()
	cr := pool.ChunkResult{Start: s.start, N: s.n, Outputs: r.GetOutputs()}
	var objects []string
	if s.object != "" {
		objects = append(objects, s.object)
	}
	if ref := r.GetOutputsRef(); ref != nil {
		objects = append(objects, ref.GetName())
		if err := checkOutputsRef(r, p.id); err != nil {
			cr.Err = fmt.Errorf("cluster: task %s[%d..%d]: %w", s.c.task, s.start, s.start+s.n-1, err)
		} else if cr.Outputs, cr.Err = p.big.getRetrying(ctx, ref, p.log); cr.Err != nil {
			cr.Err = fmt.Errorf("cluster: task %s[%d..%d]: reading its results: %w", s.c.task, s.start, s.start+s.n-1, cr.Err)
		}
	}
	p.mu.Lock()
	if p.chunks[s.id] != s {
		// Failed meanwhile (the pool was closed, the call ended).
		p.mu.Unlock()
		p.removeObjects(objects...)
		return
	}
	p.removeLocked(s)
	p.stats.results++
	p.mu.Unlock()
	if err := p.big.remove(ctx, objects...); err != nil && ctx.Err() == nil {
		p.log.Warn("cannot remove a big payload's objects (the bucket's MaxAge will)", zap.Strings("objects", objects), zap.Error(err))
	}
	if cr.Err == nil {
		p.fillFailures(&cr, s, r)
	}
	s.c.deliver(cr)
}

// getRetrying reads an object, trying again for a while when the bucket
// does not answer (a server restarting, a leader being elected).
func (b *bigStore) getRetrying(ctx context.Context, ref *pb.ObjectRef, log *zap.Logger) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		data, err := b.get(ctx, ref)
		if err == nil || !errors.Is(err, errUnreachable) || attempt == 4 {
			return data, err
		}
		log.Warn("cannot read an object now; trying again", zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
}

// removeObjects removes objects on a goroutine of the pool's (not on the
// caller's, or the results subscription's).
func (p *Pool) removeObjects(names ...string) {
	names = slices.DeleteFunc(names, func(n string) bool { return n == "" })
	if len(names) == 0 {
		return
	}
	remove := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.big.remove(ctx, names...); err != nil {
			p.log.Debug("cannot remove objects (the bucket's MaxAge will)", zap.Strings("objects", names), zap.Error(err))
		}
	}
	p.mu.Lock()
	if p.closed {
		// Shutting down: no goroutine may start (Close waits for them).
		p.mu.Unlock()
		remove()
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		remove()
	}()
}

// removeOwnObjects removes what is left of this caller's objects (Close,
// on a deployment that outlives the pool).
func (p *Pool) removeOwnObjects() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.big.removePrefix(ctx, p.id+"."); err != nil {
		p.log.Debug("cannot remove the caller's objects (the bucket's MaxAge will)", zap.Error(err))
	}
}

// --- the agent's side ---

// readInputs reads a chunk's inputs from its object. The read is part of
// the chunk's time in hand: heartbeats keep it claimed meanwhile, and
// while the bucket does not answer, it tries again a few times before it
// hands the chunk back (each delivery counts toward MaxDeliveries).
func (a *agent) readInputs(ctx context.Context, c *pb.Chunk) error {
	data, err := a.big.getRetrying(ctx, c.InputsRef, a.log)
	if err != nil {
		return fmt.Errorf("reading its inputs: %w", err)
	}
	c.Inputs, c.InputsRef = data, nil
	return nil
}

// bigReply encodes a result whose outputs are over the maximum message
// size: they go to the big-payload bucket and the message names them.
// When the bucket does not take them, the chunk fails with ErrTooLarge
// (publishing nothing would have it run again and again).
func (a *agent) bigReply(c *pb.Chunk, m *pb.Result, size int) ([]byte, error) {
	gone := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return a.callerDead(ctx, c.GetCaller())
	}
	cause := errors.New("the rest of the result is too large")
	switch {
	case gone():
		// Nobody would read them; its objects may be removed already.
		cause = errCallerGone
	case len(m.Outputs) > 0:
		name := outputsObject(c.GetCaller(), c.GetJob(), c.GetId(), a.id)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		ref, err := a.big.put(ctx, name, m.Outputs)
		cancel()
		if err != nil {
			cause = err
			break
		}
		if gone() {
			// It died (or closed) meanwhile: its objects may have
			// been removed before this one was there.
			a.removeObject(name)
			cause = errCallerGone
			break
		}
		m.Outputs, m.OutputsRef = nil, ref
		b, err := proto.Marshal(&pb.ToCaller{Msg: &pb.ToCaller_Result{Result: m}})
		if err != nil || len(b) <= msgLimit(a.nc) {
			return b, err
		}
		a.removeObject(name)
	}
	tooLarge := fmt.Errorf("%w: task %s[%d..%d]: results of %d bytes are over the server's maximum message size (%d), and the object store did not take them: %v",
		ErrTooLarge, c.GetTask(), c.GetStart(), c.GetStart()+c.GetCount()-1, size, a.nc.MaxPayload(), cause)
	m = &pb.Result{Job: c.GetJob(), Id: c.GetId(), Agent: a.id, All: &pb.Failure{Error: remoteErr(tooLarge)}}
	return proto.Marshal(&pb.ToCaller{Msg: &pb.ToCaller_Result{Result: m}})
}

var errCallerGone = errors.New("its caller is gone")

func (a *agent) removeObject(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.big.remove(ctx, name); err != nil {
		a.log.Debug("cannot remove an object (the bucket's MaxAge will)", zap.String("object", name), zap.Error(err))
	}
}

// removeCallerObjects removes a dead caller's objects (purgeCaller).
func (a *agent) removeCallerObjects(ctx context.Context, caller string) {
	if err := a.big.removePrefix(ctx, caller+"."); err != nil {
		a.log.Debug("cannot remove a dead caller's objects (the bucket's MaxAge will)", zap.Error(err))
	}
}
