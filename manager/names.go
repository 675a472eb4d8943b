// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"unicode/utf8"

	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// Published names: CPython's remote-manager recipe
// (register('get_queue', callable=lambda: queue)), where every client of
// a server reaches the same object by a name.
//
// A name holds one reference to its object, counted like a shared
// container's (entry.refs, no connection), so the object lives until
// Unpublish whatever its clients do. A lookup gives the calling
// connection a reference of its own through grantLocked: the name is a
// capability (PROTOCOL.md, "Trust model"). So names are never listed on
// the wire; only the server's own program (Names) sees them all.
//
// s.names maps a name to its object's id and is guarded by s.mu, like
// the objects and their counts.

// DefaultMaxNames is the default bound on the names a server publishes
// at once (MaxNames).
const DefaultMaxNames = 1 << 16

// checkName refuses an empty, over-long or non-UTF-8 name.
func checkName(name string) error {
	if name == "" || len(name) > MaxNameLen || !utf8.ValidString(name) {
		return errorf(ErrBadRequest, "a published name must be 1 to %d bytes of UTF-8", MaxNameLen)
	}
	return nil
}

// nameLocked publishes e under name, giving the name its reference. It
// fails with ErrNameExists if the name is taken.
func (s *Server) nameLocked(name string, e *entry) error {
	if _, taken := s.names[name]; taken {
		return errorf(ErrNameExists, "%q", name)
	}
	if len(s.names) >= s.opts.maxNames {
		return errorf(ErrBadRequest, "the server publishes its maximum of %d names", s.opts.maxNames)
	}
	s.names[name] = e.id
	e.refs++
	return nil
}

// namedLocked returns the object published under name.
func (s *Server) namedLocked(name string) *entry {
	id, ok := s.names[name]
	if !ok {
		return nil
	}
	return s.objs[id] // never nil: the name holds a reference
}

// lookupName returns the id of the object published under name. It is
// the registry's entry point for other servers of the same objects (a
// CPython-protocol server exposing names as typeids): they take their
// own reference before use, as lookupReq does.
func (s *Server) lookupName(name string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.namedLocked(name)
	if e == nil {
		return 0, false
	}
	return e.id, true
}

// Publish gives obj, a value of a type registered with RegisterType
// (RegisterType's constructor result type, e.g. a *T), a name in the
// server: clients reach it with Lookup or GetOrCreate, and calls run on
// obj itself, so the server's program can keep using it directly
// (CPython's register(name, callable=lambda: obj)). The name holds the
// object's reference until Unpublish. Publish fails with ErrNameExists
// if the name is taken, ErrUnknownType if obj's type is not registered.
func (s *Server) Publish(name string, obj any) error {
	if err := checkName(name); err != nil {
		return err
	}
	if obj == nil {
		return fmt.Errorf("manager: Publish(%q): nil object", name)
	}
	ti := customByType(reflect.TypeOf(obj))
	if ti == nil {
		return fmt.Errorf("%w: Publish(%q): %T is not a type registered with RegisterType", ErrUnknownType, name, obj)
	}
	return s.publishObj(name, ti, obj)
}

// PublishNew creates an object of a built-in type ("Queue", "dict",
// "Lock", ...; PROTOCOL.md lists their arguments) or of a type
// registered with RegisterType, as a client's Create would, and
// publishes it under name. Arguments are plain values (no proxies).
// It fails with ErrNameExists if the name is taken, and then creates
// nothing.
func (s *Server) PublishNew(ctx context.Context, name, typeid string, args ...any) (err error) {
	if err := checkName(name); err != nil {
		return err
	}
	ti := lookupType(typeid)
	if ti == nil {
		return errorf(ErrUnknownType, "%q", typeid)
	}
	if len(args) > MaxArgs {
		return fmt.Errorf("%w: %d arguments (max %d)", ErrBadArgs, len(args), MaxArgs)
	}
	vals := make([]*pb.Value, len(args))
	for i, a := range args {
		v, err := toValue(a)
		if err != nil {
			return err
		}
		if hasRefs(v) {
			return fmt.Errorf("%w: PublishNew(%q): argument %d holds a proxy", ErrBadArgs, name, i)
		}
		vals[i] = v
	}
	s.mu.Lock()
	_, taken := s.names[name]
	s.mu.Unlock()
	if taken {
		return errorf(ErrNameExists, "%q", name)
	}
	defer recoverTo(&err, nil)
	obj, err := ti.create(&callCtx{ctx: ctx, s: s}, vals)
	if err != nil {
		return err
	}
	return s.publishObj(name, ti, obj)
}

// publishObj adds obj and names it, in one step under the lock: no one
// sees the object before it has its name's reference.
func (s *Server) publishObj(name string, ti *typeInfo, obj any) error {
	secret := newSecret()
	s.mu.Lock()
	err := s.publishObjLocked(name, ti, obj, secret)
	s.mu.Unlock()
	if err != nil {
		if f, ok := obj.(freer); ok {
			s.dropValue(f.free()...)
		}
	}
	return err
}

func (s *Server) publishObjLocked(name string, ti *typeInfo, obj any, secret []byte) error {
	if _, taken := s.names[name]; taken {
		return errorf(ErrNameExists, "%q", name)
	}
	e, err := s.addLocked(ti, obj, secret)
	if err != nil {
		return err
	}
	if err := s.nameLocked(name, e); err != nil {
		delete(s.objs, e.id)
		return err
	}
	return nil
}

// Unpublish removes name and drops its reference: the object is freed
// unless a client or a container still references it. It fails with
// ErrNameNotFound if name is not published.
func (s *Server) Unpublish(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	s.mu.Lock()
	id, ok := s.names[name]
	var dead []*entry
	if ok {
		delete(s.names, name)
		dead = s.decrefLocked(id, 1, nil)
	}
	s.mu.Unlock()
	if !ok {
		return errorf(ErrNameNotFound, "%q", name)
	}
	s.freeEntries(dead)
	return nil
}

// Names returns the published names, sorted. It is for the server's own
// program: names are capabilities, so no request lists them.
func (s *Server) Names() []string {
	s.mu.Lock()
	names := make([]string, 0, len(s.names))
	for n := range s.names {
		names = append(names, n)
	}
	s.mu.Unlock()
	slices.Sort(names)
	return names
}

// publishReq serves publish: sc names an object it reaches. With
// if_absent and the name taken, sc gets a reference to the object
// already published instead (the answer to a create-if-absent race).
func (s *Server) publishReq(sc *sconn, p *pb.Publish) (*pb.Value, error) {
	if err := checkName(p.Name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.objs[p.Object]
	if e == nil || sc.refs[p.Object] <= 0 {
		return nil, errorf(ErrUnknownObject, "no object %d", p.Object)
	}
	if p.IfAbsent {
		if old := s.namedLocked(p.Name); old != nil {
			return s.grantRefLocked(sc, old), nil
		}
	}
	if err := s.nameLocked(p.Name, e); err != nil {
		return nil, err
	}
	return nullValue, nil
}

// lookupReq serves lookup: the name grants sc a reference to its object.
func (s *Server) lookupReq(sc *sconn, l *pb.Lookup) (*pb.Value, error) {
	if err := checkName(l.Name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.namedLocked(l.Name)
	if e == nil {
		return nil, errorf(ErrNameNotFound, "%q", l.Name)
	}
	return s.grantRefLocked(sc, e), nil
}

// grantRefLocked gives sc one reference to e and returns the proxy
// reference that carries it.
func (s *Server) grantRefLocked(sc *sconn, e *entry) *pb.Value {
	s.grantLocked(sc, e, 1)
	return refValue(&pb.ProxyRef{Id: e.id, Typeid: e.ti.name, Secret: e.secret})
}
