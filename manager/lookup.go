// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// Publish gives the object p refers to a name in its server, so that
// every client of that server reaches it with Lookup (CPython's remote
// manager recipe, register('get_queue', callable=lambda: queue)). The
// server then holds a reference for the name: the object lives until
// Unpublish, even when every proxy to it is released or its clients
// disconnect. Publish fails with ErrNameExists if the name is taken.
//
// p must be a proxy of c's server. Names are 1 to MaxNameLen bytes of
// UTF-8, and a server publishes at most MaxNames of them.
//
// Anyone who knows the authkey and a name can reach its object: the name
// is the object's capability (PROTOCOL.md, "Trust model").
func (c *Client) Publish(ctx context.Context, name string, p Proxy) error {
	_, _, err := c.publish(ctx, name, p, false)
	return err
}

// publish sends publish for p and returns the response's value: null
// when p was published, or (ifAbsent, the name taken) a reference to the
// object published already, which the caller must take or drop.
func (c *Client) publish(ctx context.Context, name string, p Proxy, ifAbsent bool) (*pb.Value, *Client, error) {
	if err := checkName(name); err != nil {
		return nil, nil, err
	}
	h := handleOf(p)
	if h == nil {
		return nil, nil, errors.New("manager: Publish: proxy is not bound to a shared object")
	}
	// The request goes on the connection that holds p's reference.
	hc, err := h.conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	if hc != c {
		network, address, _ := h.addr()
		if address == "" || network != c.network || address != c.address {
			return nil, nil, fmt.Errorf("manager: Publish: a proxy of %s %d belongs to another manager", h.typeid, h.id)
		}
	}
	v, err := hc.do(ctx, &pb.Request{Op: &pb.Request_Publish{Publish: &pb.Publish{Name: name, Object: h.id, IfAbsent: ifAbsent}}})
	return v, hc, err
}

// Unpublish removes a name from c's server and drops the server's
// reference for it: the object is freed unless some proxy or container
// still references it. It fails with ErrNameNotFound if the name is not
// published.
func (c *Client) Unpublish(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	_, err := c.do(ctx, &pb.Request{Op: &pb.Request_Unpublish{Unpublish: &pb.Unpublish{Name: name}}})
	return err
}

// Lookup returns a proxy of type P to the object published under name in
// c's server (by Client.Publish, Server.Publish, Server.PublishNew or
// GetOrCreate): that very object, shared with every client that looks it
// up. The proxy owns a reference of its own; releasing it leaves the
// object published. A name not published fails with an error matching
// ErrNameNotFound.
//
// P is a proxy type: manager.Lookup[*manager.Queue[string]](ctx, c,
// "jobs"), *Dict[K, V], *Lock, ..., or *Object for a registered type or
// for any object. The object's type must fit P (a *Queue[T] takes a
// Queue or a JoinableQueue, a *Semaphore a Semaphore or a
// BoundedSemaphore), else Lookup fails with an error matching
// ErrTypeError and takes nothing; element types (T, K, V) are not
// checked, as for every proxy.
func Lookup[P Proxy](ctx context.Context, c *Client, name string) (P, error) {
	var zero P
	if c == nil {
		return zero, errors.New("manager: nil Client")
	}
	if err := checkName(name); err != nil {
		return zero, err
	}
	v, err := c.do(ctx, &pb.Request{Op: &pb.Request_Lookup{Lookup: &pb.Lookup{Name: name}}})
	if err != nil {
		return zero, err
	}
	return namedProxy[P](c, name, v)
}

// GetOrCreate returns a proxy to the object published under name, and
// publishes the object that create makes when there is none yet, in one
// step: when many clients do it at once, for one name, exactly one
// object is published and every one of them gets a proxy to it. created
// tells whether it is the one that create made.
//
//	q, _, err := manager.GetOrCreate(ctx, c, "jobs", func(ctx context.Context) (*manager.Queue[string], error) {
//		return manager.NewQueue[string](ctx, c, 0)
//	})
//
// create runs only when the name is not published; when another client
// publishes the name between its lookup and its publish, the object
// create made is released (and freed) and the other client's object is
// returned. The type rules are Lookup's.
func GetOrCreate[P Proxy](ctx context.Context, c *Client, name string, create func(context.Context) (P, error)) (p P, created bool, err error) {
	var zero P
	p, err = Lookup[P](ctx, c, name)
	if err == nil || !errors.Is(err, ErrNameNotFound) {
		return p, false, err
	}
	mine, err := create(ctx)
	if err != nil {
		return zero, false, err
	}
	v, hc, err := c.publish(ctx, name, mine, true)
	if err != nil {
		releaseProxy(mine)
		return zero, false, err
	}
	if _, null := v.GetKind().(*pb.Value_Null); null {
		return mine, true, nil
	}
	// Another client published the name first: take its object.
	releaseProxy(mine)
	p, err = namedProxy[P](hc, name, v)
	return p, false, err
}

// releaseProxy drops p's reference (batched with the client's next
// request).
func releaseProxy(p Proxy) {
	if h := handleOf(p); h != nil {
		h.release()
	}
}

// namedProxy turns the reference a lookup returned into a P, after
// checking that the object's type fits P; a reference it does not take
// is given back.
func namedProxy[P Proxy](c *Client, name string, v *pb.Value) (P, error) {
	var zero P
	r, ok := v.GetKind().(*pb.Value_Proxy)
	if !ok || r.Proxy == nil {
		return zero, fmt.Errorf("manager: lookup of %q: server returned a %s, not a reference", name, kindName(v))
	}
	t := reflect.TypeFor[P]()
	if want := proxyTypeids(t); want != nil && !slices.Contains(want, r.Proxy.Typeid) {
		c.queueDecref(r.Proxy.Id)
		return zero, &typeError{msg: fmt.Sprintf("name %q is a %s, which does not fit %s", name, r.Proxy.Typeid, t)}
	}
	return decodeAs[P](c, v)
}

// proxyTypeids returns the type names whose objects a proxy type serves,
// or nil when it serves any (*Object, an interface).
func proxyTypeids(t reflect.Type) []string {
	if t.Kind() != reflect.Pointer || t.Elem().PkgPath() != reflect.TypeFor[Object]().PkgPath() {
		return nil
	}
	name, _, _ := strings.Cut(t.Elem().Name(), "[")
	switch name {
	case "Dict":
		return []string{"dict"}
	case "List":
		return []string{"list"}
	case "Queue":
		return []string{"Queue", "JoinableQueue"}
	case "Semaphore":
		return []string{"Semaphore", "BoundedSemaphore", "OwnedSemaphore"}
	case "Lock":
		return []string{"Lock", "RLock"}
	case "Namespace", "Value", "Array", "JoinableQueue", "RLock", "Condition", "Event", "Barrier", "OwnedSemaphore":
		return []string{name}
	}
	return nil
}
