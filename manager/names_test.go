// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/manager"
	"github.com/multiproc/multiproc/process"
	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// Issue 17 item 3: shared objects by name on a remote manager (CPython's
// "Using a remote manager" recipe).

// connectTo connects to a server by its address and authkey alone, as a
// separate program on another host would.
func connectTo(ctx context.Context, network, addr string, key []byte) (*manager.Client, error) {
	return manager.Connect(ctx, network, addr, manager.Authkey(key))
}

const stopJob = -1

var (
	// childProducer puts 1..n and then stopJob on the queue named "jobs".
	childProducer = process.Register("mgr.named.producer", func(ctx context.Context, network, addr string, key []byte, n int) error {
		c, err := connectTo(ctx, network, addr, key)
		if err != nil {
			return err
		}
		defer c.Close()
		q, err := manager.Lookup[*manager.Queue[int]](ctx, c, "jobs")
		if err != nil {
			return err
		}
		for i := 1; i <= n; i++ {
			if err := q.Put(ctx, i); err != nil {
				return err
			}
		}
		return q.Put(ctx, stopJob)
	})
	// childConsumer gets from "jobs" until stopJob, checks the order and
	// puts the sum into the dict named "results".
	childConsumer = process.Register("mgr.named.consumer", func(ctx context.Context, network, addr string, key []byte) error {
		c, err := connectTo(ctx, network, addr, key)
		if err != nil {
			return err
		}
		defer c.Close()
		q, err := manager.Lookup[*manager.Queue[int]](ctx, c, "jobs")
		if err != nil {
			return err
		}
		results, err := manager.Lookup[*manager.Dict[string, int]](ctx, c, "results")
		if err != nil {
			return err
		}
		sum, want := 0, 1
		for {
			v, err := q.Get(ctx)
			if err != nil {
				return err
			}
			if v == stopJob {
				break
			}
			if v != want {
				return fmt.Errorf("got job %d, want %d", v, want)
			}
			want++
			sum += v
		}
		return results.Set(ctx, "sum", sum)
	})
)

// A producer process and a consumer process, separate, over TCP with an
// authkey, share a queue by its name on a server that the server's own
// program published.
func TestNamedQueueProducerConsumer(t *testing.T) {
	mptest.CheckChildren(t)
	ts := startServer(t, "tcp")
	ctx := ctxT(t)
	if err := ts.srv.PublishNew(ctx, "jobs", "Queue", 0); err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.PublishNew(ctx, "results", "dict"); err != nil {
		t.Fatal(err)
	}
	const n = 200
	// The consumer starts first and waits in Get for the producer's items.
	cons := &process.Process{Func: childConsumer, Args: []any{ts.network, ts.addr, ts.key}}
	if err := cons.Start(ctx); err != nil {
		t.Fatal(err)
	}
	prod := &process.Process{Func: childProducer, Args: []any{ts.network, ts.addr, ts.key, n}}
	if err := prod.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := prod.Wait(); err != nil {
		t.Fatalf("producer: %v", err)
	}
	if err := cons.Wait(); err != nil {
		t.Fatalf("consumer: %v", err)
	}
	results, err := manager.Lookup[*manager.Dict[string, int]](ctx, ts.client, "results")
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := results.Get(ctx, "sum"); err != nil || sum != n*(n+1)/2 {
		t.Fatalf("sum %d, %v; want %d", sum, err, n*(n+1)/2)
	}
	// Both children are gone and their proxies with them; the names
	// still hold their objects.
	if got := ts.srv.Names(); strings.Join(got, ",") != "jobs,results" {
		t.Fatalf("names %q", got)
	}
	q, err := manager.Lookup[*manager.Queue[int]](ctx, ts.client, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if size, err := q.Qsize(ctx); err != nil || size != 0 {
		t.Fatalf("qsize %d, %v", size, err)
	}
}

// childGetOrCreate waits for the start signal, then races for the name
// "counter": every racer adds 1 to the one counter, and the one whose
// object was published appends its id to "winners".
var childGetOrCreate = process.Register("mgr.named.race", func(ctx context.Context, network, addr string, key []byte, id int) error {
	c, err := connectTo(ctx, network, addr, key)
	if err != nil {
		return err
	}
	defer c.Close()
	start, err := manager.Lookup[*manager.Event](ctx, c, "start")
	if err != nil {
		return err
	}
	winners, err := manager.Lookup[*manager.List[int]](ctx, c, "winners")
	if err != nil {
		return err
	}
	if err := start.Wait(ctx); err != nil {
		return err
	}
	v, created, err := manager.GetOrCreate(ctx, c, "counter", func(ctx context.Context) (*manager.Value[int], error) {
		return manager.NewValue(ctx, c, 0)
	})
	if err != nil {
		return err
	}
	if _, err := v.Add(ctx, 1); err != nil {
		return err
	}
	if created {
		return winners.Append(ctx, id)
	}
	return nil
})

// Create-if-absent is atomic: processes racing for one name all end up
// with the same object, exactly one of them made it, and the objects the
// others made are freed.
func TestGetOrCreateRaceProcesses(t *testing.T) {
	mptest.CheckChildren(t)
	ts := startServer(t, "tcp")
	ctx := ctxT(t)
	if err := ts.srv.PublishNew(ctx, "start", "Event"); err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.PublishNew(ctx, "winners", "list", []int{}); err != nil {
		t.Fatal(err)
	}
	const racers = 6
	procs := make([]*process.Process, racers)
	for i := range procs {
		procs[i] = &process.Process{Func: childGetOrCreate, Args: []any{ts.network, ts.addr, ts.key, i}}
		if err := procs[i].Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	start, err := manager.Lookup[*manager.Event](ctx, ts.client, "start")
	if err != nil {
		t.Fatal(err)
	}
	if err := start.Set(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if err := p.Wait(); err != nil {
			t.Fatalf("racer %s: %v", p, err)
		}
	}
	start.Release(ctx)
	winners, err := manager.Lookup[*manager.List[int]](ctx, ts.client, "winners")
	if err != nil {
		t.Fatal(err)
	}
	if w, err := winners.Copy(ctx); err != nil || len(w) != 1 {
		t.Fatalf("winners %v, %v; want exactly one", w, err)
	}
	counter, err := manager.Lookup[*manager.Value[int]](ctx, ts.client, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := counter.Get(ctx); err != nil || n != racers {
		t.Fatalf("counter %d, %v; want %d", n, err, racers)
	}
	// Live objects: the three named ones. The losers' values are freed.
	if n := ts.srv.NumObjects(); n != 3 {
		objs, _ := ts.client.Objects(ctx)
		t.Fatalf("%d live objects %+v, want 3 (start, winners, counter)", n, objs)
	}
}

// The same race between goroutines on separate connections, many rounds.
func TestGetOrCreateRaceConns(t *testing.T) {
	ts := startServer(t, "unix")
	ctx := ctxT(t)
	const conns = 8
	clients := make([]*manager.Client, conns)
	for i := range clients {
		c, err := connectTo(ctx, ts.network, ts.addr, ts.key)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	for round := range 20 {
		name := fmt.Sprintf("d%d", round)
		var wg sync.WaitGroup
		ids := make([]uint64, conns)
		created := make([]bool, conns)
		errs := make([]error, conns)
		for i, c := range clients {
			wg.Go(func() {
				d, made, err := manager.GetOrCreate(ctx, c, name, func(ctx context.Context) (*manager.Dict[string, int], error) {
					return manager.NewDict[string, int](ctx, c)
				})
				if err != nil {
					errs[i] = err
					return
				}
				ids[i], created[i] = d.ID(), made
				_, errs[i] = d.SetDefault(ctx, "racers", 0)
				d.Release(ctx)
			})
		}
		wg.Wait()
		wins := 0
		for i := range clients {
			if errs[i] != nil {
				t.Fatalf("round %d, client %d: %v", round, i, errs[i])
			}
			if ids[i] != ids[0] {
				t.Fatalf("round %d: client %d got object %d, client 0 got %d", round, i, ids[i], ids[0])
			}
			if created[i] {
				wins++
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d clients created the object, want 1", round, wins)
		}
	}
	for _, c := range clients {
		c.FlushReleases()
		c.Ping(ctx)
	}
	if n := ts.srv.NumObjects(); n != 20 {
		t.Fatalf("%d live objects, want the 20 named dicts", n)
	}
}

var childPublishAndLeave = process.Register("mgr.named.publish", func(ctx context.Context, network, addr string, key []byte) error {
	c, err := connectTo(ctx, network, addr, key)
	if err != nil {
		return err
	}
	d, err := manager.NewDict[string, string](ctx, c, map[string]string{"by": "child"})
	if err != nil {
		return err
	}
	if err := c.Publish(ctx, "left-behind", d); err != nil {
		return err
	}
	// Drop the proxy, then the connection: neither frees a published
	// object.
	if err := d.Release(ctx); err != nil {
		return err
	}
	return c.Close()
})

// A client that drops its proxy, or its whole connection, does not
// destroy an object published by name; Unpublish releases it.
func TestPublishedOutlivesProxies(t *testing.T) {
	mptest.CheckChildren(t)
	ts := startServer(t, "tcp")
	ctx := ctxT(t)
	runChild(t, childPublishAndLeave, ts.network, ts.addr, ts.key)
	if n := ts.srv.NumObjects(); n != 1 {
		t.Fatalf("%d live objects after the publisher left, want 1", n)
	}
	d, err := manager.Lookup[*manager.Dict[string, string]](ctx, ts.client, "left-behind")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := d.Get(ctx, "by"); err != nil || v != "child" {
		t.Fatalf("Get: %q, %v", v, err)
	}
	// Dropping a looked-up proxy leaves the object published.
	if err := d.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := ts.srv.NumObjects(); n != 1 {
		t.Fatalf("%d live objects after the lookup's proxy was released, want 1", n)
	}
	// A proxy held across Unpublish keeps the object alive; the name is gone.
	d, err = manager.Lookup[*manager.Dict[string, string]](ctx, ts.client, "left-behind")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.client.Unpublish(ctx, "left-behind"); err != nil {
		t.Fatal(err)
	}
	if _, err := manager.Lookup[*manager.Dict[string, string]](ctx, ts.client, "left-behind"); !errors.Is(err, manager.ErrNameNotFound) {
		t.Fatalf("lookup after Unpublish: %v, want ErrNameNotFound", err)
	}
	if v, err := d.Get(ctx, "by"); err != nil || v != "child" {
		t.Fatalf("Get through the proxy held across Unpublish: %q, %v", v, err)
	}
	if err := d.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := ts.srv.NumObjects(); n != 0 {
		t.Fatalf("%d live objects after Unpublish and the last release, want 0", n)
	}
	// Unpublish with no proxy left frees the object at once.
	q, err := manager.NewQueue[int](ctx, ts.client, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.client.Publish(ctx, "q", q); err != nil {
		t.Fatal(err)
	}
	if err := q.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Unpublish("q"); err != nil {
		t.Fatal(err)
	}
	if n := ts.srv.NumObjects(); n != 0 {
		t.Fatalf("%d live objects after Unpublish, want 0", n)
	}
	if err := ts.srv.Unpublish("q"); !errors.Is(err, manager.ErrNameNotFound) {
		t.Fatalf("second Unpublish: %v, want ErrNameNotFound", err)
	}
}

// A name is a capability: a connection that did not create an object
// cannot reach it by its id until it looks up a name that the object was
// published under; then it can. After Unpublish, a fresh connection
// cannot reach it again.
func TestLookupGrantsCapability(t *testing.T) {
	ts := startServer(t, "unix")
	ctx := ctxT(t)
	d, err := manager.NewDict[string, string](ctx, ts.client, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	id := d.ID()
	call := &pb.Request{Op: &pb.Request_Call{Call: &pb.Call{Object: id, Method: "Get", Args: []*pb.Value{strArg("k")}}}}
	b := dialRaw(t, ts)
	if resp := b.do(call); !isUnknownObject(resp.Error) {
		t.Fatalf("call before any lookup: %v, want unknown_object", resp)
	}
	// Publishing an object needs its capability too.
	resp := b.do(&pb.Request{Op: &pb.Request_Publish{Publish: &pb.Publish{Name: "stolen", Object: id}}})
	if !isUnknownObject(resp.Error) {
		t.Fatalf("publish of an unreachable object: %v, want unknown_object", resp)
	}
	if got := ts.srv.Names(); len(got) != 0 {
		t.Fatalf("names %q after a refused publish", got)
	}
	if err := ts.client.Publish(ctx, "shared", d); err != nil {
		t.Fatal(err)
	}
	resp = b.do(&pb.Request{Op: &pb.Request_Lookup{Lookup: &pb.Lookup{Name: "shared"}}})
	ref := resp.GetValue().GetProxy()
	if resp.Error != nil || ref.GetId() != id || ref.GetTypeid() != "dict" || len(ref.GetSecret()) != 16 {
		t.Fatalf("lookup: %v", resp)
	}
	if resp := b.do(call); resp.Error != nil || resp.GetValue().GetString_() != "v" {
		t.Fatalf("call after the lookup: %v", resp)
	}
	if err := ts.client.Unpublish(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	// b still holds the reference its lookup gave; a new connection gets
	// nothing by the name or by the id.
	if resp := b.do(call); resp.Error != nil {
		t.Fatalf("call with the looked-up reference after Unpublish: %v", resp.Error)
	}
	c2 := dialRaw(t, ts)
	if resp := c2.do(call); !isUnknownObject(resp.Error) {
		t.Fatalf("call from a new connection: %v, want unknown_object", resp)
	}
	resp = c2.do(&pb.Request{Op: &pb.Request_Lookup{Lookup: &pb.Lookup{Name: "shared"}}})
	if resp.Error == nil || !strings.Contains(resp.Error.GetMessage(), "name not published") {
		t.Fatalf("lookup after Unpublish: %v", resp)
	}
}

// Errors: missing and taken names, bad names, the bound on names, and a
// proxy type that does not fit the object (which leaves no reference
// behind).
func TestNamesErrors(t *testing.T) {
	ts := startServer(t, "unix")
	ctx := ctxT(t)
	c := ts.client
	if _, err := manager.Lookup[*manager.Queue[int]](ctx, c, "nope"); !errors.Is(err, manager.ErrNameNotFound) {
		t.Fatalf("lookup of a missing name: %v, want ErrNameNotFound", err)
	}
	if err := c.Unpublish(ctx, "nope"); !errors.Is(err, manager.ErrNameNotFound) {
		t.Fatalf("Unpublish of a missing name: %v, want ErrNameNotFound", err)
	}
	q, err := manager.NewQueue[int](ctx, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "q", q); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "q", q); !errors.Is(err, manager.ErrNameExists) {
		t.Fatalf("second Publish: %v, want ErrNameExists", err)
	}
	if err := ts.srv.PublishNew(ctx, "q", "dict"); !errors.Is(err, manager.ErrNameExists) {
		t.Fatalf("PublishNew of a taken name: %v, want ErrNameExists", err)
	}
	// One object under two names is fine.
	if err := c.Publish(ctx, "q2", q); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", strings.Repeat("n", manager.MaxNameLen+1), "\xff"} {
		if err := c.Publish(ctx, bad, q); !errors.Is(err, manager.ErrBadRequest) {
			t.Errorf("Publish(%.10q): %v, want ErrBadRequest", bad, err)
		}
		if _, err := manager.Lookup[*manager.Object](ctx, c, bad); !errors.Is(err, manager.ErrBadRequest) {
			t.Errorf("Lookup(%.10q): %v, want ErrBadRequest", bad, err)
		}
	}
	if err := c.Publish(ctx, strings.Repeat("n", manager.MaxNameLen), q); err != nil {
		t.Fatalf("Publish of a name of MaxNameLen bytes: %v", err)
	}
	// A Lock proxy does not fit a queue: ErrTypeError, and the reference
	// the lookup took is given back.
	if _, err := manager.Lookup[*manager.Lock](ctx, c, "q"); !errors.Is(err, manager.ErrTypeError) {
		t.Fatalf("Lookup as a Lock: %v, want ErrTypeError", err)
	}
	if _, err := manager.Lookup[*manager.JoinableQueue[int]](ctx, c, "q"); !errors.Is(err, manager.ErrTypeError) {
		t.Fatalf("Lookup of a Queue as a JoinableQueue: %v, want ErrTypeError", err)
	}
	// Any proxy fits *Object and the Proxy interface.
	o, err := manager.Lookup[*manager.Object](ctx, c, "q")
	if err != nil || o.TypeID() != "Queue" {
		t.Fatalf("Lookup as an Object: %v, %v", o, err)
	}
	o.Release(ctx)
	p, err := manager.Lookup[manager.Proxy](ctx, c, "q")
	if err != nil || p.ID() != q.ID() {
		t.Fatalf("Lookup as a Proxy: %v, %v", p, err)
	}
	c.FlushReleases()
	c.Ping(ctx)
	objs, err := c.Objects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// q's references: the proxy q, three names, and p.
	if len(objs) != 1 || objs[0].Refs != 5 {
		t.Fatalf("objects %+v, want one queue with 5 references", objs)
	}
	// A server-side program's objects must be of a registered type.
	if err := ts.srv.Publish("x", struct{}{}); !errors.Is(err, manager.ErrUnknownType) {
		t.Fatalf("Publish of an unregistered type: %v, want ErrUnknownType", err)
	}
	if err := ts.srv.PublishNew(ctx, "x", "NoSuchType"); !errors.Is(err, manager.ErrUnknownType) {
		t.Fatalf("PublishNew of an unknown type: %v, want ErrUnknownType", err)
	}
	if err := ts.srv.PublishNew(ctx, "x", "dict", map[string]any{"q": q}); !errors.Is(err, manager.ErrBadArgs) {
		t.Fatalf("PublishNew with a proxy argument: %v, want ErrBadArgs", err)
	}
}

// The number of names is bounded.
func TestMaxNames(t *testing.T) {
	srv := manager.NewServer(manager.MaxNames(3))
	defer srv.Close()
	ctx := ctxT(t)
	for i := range 3 {
		if err := srv.PublishNew(ctx, fmt.Sprint(i), "Lock"); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.PublishNew(ctx, "3", "Lock"); !errors.Is(err, manager.ErrBadRequest) || !strings.Contains(err.Error(), "maximum of 3 names") {
		t.Fatalf("fourth name: %v, want the bound", err)
	}
	if n := srv.NumObjects(); n != 3 {
		t.Fatalf("%d objects, want 3 (the refused name made none)", n)
	}
	if err := srv.Unpublish("0"); err != nil {
		t.Fatal(err)
	}
	if err := srv.PublishNew(ctx, "3", "Lock"); err != nil {
		t.Fatalf("a name after an Unpublish: %v", err)
	}
}

// The server's program publishes one of its own Go objects; clients'
// calls run on that very object.
func TestServerPublishesGoObject(t *testing.T) {
	ts := startServer(t, "unix")
	ctx := ctxT(t)
	counter := &Counter{n: 10}
	if err := ts.srv.Publish("counter", counter); err != nil {
		t.Fatal(err)
	}
	o, err := manager.Lookup[*manager.Object](ctx, ts.client, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := manager.Call[int](ctx, o, "Add", 5); err != nil || got != 15 {
		t.Fatalf("Add(5) = %d, %v", got, err)
	}
	if got := counter.Add(0); got != 15 {
		t.Fatalf("the server's own object holds %d, want 15", got)
	}
	// A custom object that a client creates and publishes reaches another
	// client by its name too.
	mine, err := ts.client.Create(ctx, "Counter", 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.client.Publish(ctx, "their-counter", mine); err != nil {
		t.Fatal(err)
	}
	other, err := connectTo(ctx, ts.network, ts.addr, ts.key)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	theirs, err := manager.Lookup[*manager.Object](ctx, other, "their-counter")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := manager.Call[int](ctx, theirs, "Add", 1); err != nil || got != 101 || theirs.TypeID() != "Counter" {
		t.Fatalf("Add(1) through the other client: %d, %v (type %s)", got, err, theirs.TypeID())
	}
	// A create that fails publishes nothing.
	boom := errors.New("boom")
	if _, _, err := manager.GetOrCreate(ctx, other, "never", func(context.Context) (*manager.Object, error) {
		return nil, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("GetOrCreate with a failing create: %v, want its error", err)
	}
	if _, err := manager.Lookup[*manager.Object](ctx, other, "never"); !errors.Is(err, manager.ErrNameNotFound) {
		t.Fatalf("lookup after a failed create: %v, want ErrNameNotFound", err)
	}
}

var childPublishAndHang = process.Register("mgr.named.hang", func(ctx context.Context, ready *ipc.Conn, network, addr string, key []byte) error {
	defer ready.Close()
	c, err := connectTo(ctx, network, addr, key)
	if err != nil {
		return err
	}
	q, err := manager.NewQueue[string](ctx, c, 0)
	if err != nil {
		return err
	}
	if err := q.Put(ctx, "left by the dead"); err != nil {
		return err
	}
	if err := c.Publish(ctx, "survivor", q); err != nil {
		return err
	}
	// An object of its own, not published: it dies with the connection.
	if _, err := manager.NewDict[string, int](ctx, c); err != nil {
		return err
	}
	if err := ready.SendBytes(ctx, []byte("published")); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
})

// A publisher SIGKILLed while holding its proxies: the server drops its
// connection's references, but the published object lives on, contents
// and all, for the next client that looks it up.
func TestPublisherKilled(t *testing.T) {
	mptest.CheckChildren(t)
	ts := startServer(t, "tcp")
	ctx := ctxT(t)
	mine, theirs, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	p := &process.Process{Func: childPublishAndHang, Args: []any{theirs, ts.network, ts.addr, ts.key}}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	if _, err := mine.RecvBytes(ctx); err != nil {
		t.Fatalf("child not ready: %v (%v)", err, p.Wait())
	}
	if n := ts.srv.NumObjects(); n != 2 {
		t.Fatalf("%d objects while the child lives, want 2", n)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	var ee *process.ExitError
	if err := p.Wait(); !errors.As(err, &ee) {
		t.Fatalf("killed child: %v", err)
	}
	// The server notices the dead connection and frees the unpublished
	// dict (a generous ceiling: it proves the wait is not indefinite).
	for ts.srv.NumObjects() != 1 {
		if ctx.Err() != nil {
			t.Fatalf("%d objects after the publisher died, want 1", ts.srv.NumObjects())
		}
		time.Sleep(5 * time.Millisecond)
	}
	q, err := manager.Lookup[*manager.Queue[string]](ctx, ts.client, "survivor")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := q.Get(ctx); err != nil || v != "left by the dead" {
		t.Fatalf("Get: %q, %v", v, err)
	}
}

// MaxNames reaches a server that Start spawns.
func TestMaxNamesStart(t *testing.T) {
	mptest.CheckChildren(t)
	ctx := ctxT(t)
	m, err := manager.Start(ctx, manager.MaxNames(2))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i := range 3 {
		v, _, err := manager.GetOrCreate(ctx, m.Client, fmt.Sprint(i), func(ctx context.Context) (*manager.Value[int], error) {
			return manager.NewValue(ctx, m.Client, i)
		})
		if i < 2 && err != nil {
			t.Fatal(err)
		}
		if i == 2 && (!errors.Is(err, manager.ErrBadRequest) || !strings.Contains(err.Error(), "maximum of 2 names")) {
			t.Fatalf("third name: %v, want the bound", err)
		}
		if v != nil {
			v.Release(ctx)
		}
	}
	// The refused create-if-absent left no object behind.
	m.FlushReleases()
	if objs, err := m.Objects(ctx); err != nil || len(objs) != 2 {
		t.Fatalf("objects %+v, %v; want the 2 named values", objs, err)
	}
}

// BenchmarkLookup: a lookup by name and the Release of its proxy (two
// round trips), against a server that Start spawned.
func BenchmarkLookup(b *testing.B) {
	ctx := context.Background()
	m, err := manager.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	q, err := manager.NewQueue[int](ctx, m.Client, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Publish(ctx, "jobs", q); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		p, err := manager.Lookup[*manager.Queue[int]](ctx, m.Client, "jobs")
		if err != nil {
			b.Fatal(err)
		}
		p.Release(context.Background())
	}
}
