// SPDX-License-Identifier: Apache-2.0

// Package manager shares objects between processes through a server
// process that owns them, as CPython's multiprocessing.managers does:
// clients hold proxies, and every operation on a proxy is a request to the
// server.
//
// # Starting a manager
//
// Start spawns the server as a daemon child process (through the process
// package: call process.Init first in main) listening on a unix socket in
// a private directory with a fresh random authkey, and connects to it:
//
//	m, err := manager.Start(ctx)
//	defer m.Close()
//	d, err := manager.NewDict[string, int](ctx, m.Client)
//	err = d.Set(ctx, "a", 1)
//
// A server can also run in this process (NewServer, then Serve on a
// Listener, or ServeConn on one end of an ipc.Pipe), or standalone for
// remote clients: Listen("tcp", "0.0.0.0:5000", Authkey(key)) and, on
// other machines, Connect(ctx, "tcp", "host:5000", Authkey(key)).
// Every connection passes CPython's HMAC challenge handshake (ipc.Listen);
// a client with a wrong key gets nothing, and clients that connect and
// stay silent delay no one. An authenticated client reaches only the
// objects it created, received through a proxy (in a value, or handed to
// its process) or, later, looked up by name: object ids are not
// capabilities, each object has a random 128-bit secret that a handed
// proxy carries (PROTOCOL.md, "Trust model"). No client can exhaust a
// server: the calls that may wait are bounded per connection and in all
// (MaxCalls, MaxCallBytes), and a connection at its bound is not
// read from until one of its calls ends; Server.Stats and Client.Stats
// report the load.
//
// # Remote managers and TLS
//
// The authkey handshake authenticates both sides but encrypts nothing:
// over a network that is not trusted, add TLS (TCP only) with TLS on
// both sides, a server configuration for Listen and a client one for
// Connect:
//
//	l, err := manager.Listen("tcp", ":5000", manager.Authkey(key),
//		manager.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
//	c, err := manager.Connect(ctx, "tcp", "host:5000", manager.Authkey(key),
//		manager.TLS(&tls.Config{RootCAs: pool}))
//
// The TLS handshake comes first, then the authkey handshake and every
// request inside TLS; ClientAuth and ClientCAs in the server's
// configuration require client certificates too. A client without TLS,
// one that does not trust the server's certificate, or one whose
// certificate the server does not trust gets nothing, as a client with a
// wrong key. A server started by Start listens with TLS with
// ServerTLS(name), naming a function registered at package level
// with RegisterServerTLS that makes its configuration in the server
// process (a *tls.Config cannot be sent there). A proxy of a TLS-only
// server handed to another process says so; that process dials with the
// configuration it set with SetClientTLS (trusted roots and keys never
// travel with a proxy), and a call without one fails saying so.
//
// ipc's connections read their descriptors directly, so TLS ends in a
// pair of goroutines per connection that copy between the TLS connection
// and a socketpair (see ipc.TLS). On loopback with 2 CPUs a dict
// get costs about twice as much over TLS as over plain TCP; see
// BenchmarkTLS.
//
// # Shared objects by name
//
// CPython's remote-manager recipe (register('get_queue', callable=lambda:
// queue)) is a published name: every client of a server reaches the same
// object by it. The server's program publishes with Server.PublishNew (a
// built-in or registered type, made in the server) or Server.Publish (one
// of its own Go values of a registered type); a client publishes an
// object it holds with Client.Publish. Clients look a name up with
// Lookup, typed by the proxy they want:
//
//	q, err := manager.Lookup[*manager.Queue[string]](ctx, c, "jobs")
//
// GetOrCreate looks a name up and publishes a new object when there is
// none, in one step: when many clients race for a name, one object is
// published and all of them get it. A name holds a reference, so the
// object outlives every proxy and every client (its publisher's death
// included) until Unpublish. A missing name is ErrNameNotFound, a taken
// one ErrNameExists; names are at most MaxNameLen bytes and a server
// holds at most MaxNames of them. A name is a capability: a lookup gives
// the connection access to the object, which it could not reach by its
// id alone, so no request lists the names.
//
// # Shared types
//
// Built in, each with a typed proxy: Dict[K, V] (insertion ordered),
// List[T], Namespace, Queue[T] and JoinableQueue[T], Value[T], Array[T],
// Lock, RLock, Semaphore, BoundedSemaphore, OwnedSemaphore (permits given
// back when their holder dies; no CPython equivalent), Condition, Event and
// Barrier.
// Values crossing the wire are a small language-neutral model (null, bool,
// integers, floats, strings, bytes, lists, maps and proxy references; see
// PROTOCOL.md): nothing from the wire is ever executed. Go
// structs ride it as maps of their exported fields, so a Dict[string,
// Order], a List[Order], a struct in a Namespace or a struct argument of
// a registered type's method work, nested structs, slices and maps of
// them and proxies in their fields included; a struct holding a channel
// or a func is refused with an error naming the field.
//
// In detail, a value may be nil, a bool, any integer or float type, a
// string, a []byte, a slice or array, a map whose keys are scalars, a
// struct, a pointer to any of these, or a proxy. A struct becomes a map
// from the names of its exported fields (in declaration order) to their
// values; unexported fields are left out, and an embedded struct is one
// field named after its type. A struct type with a text form
// (encoding.TextMarshaler on T or *T and encoding.TextUnmarshaler on *T,
// as time.Time has) becomes that text. Decoding fills a struct's fields by
// name, ignores names it does not have and leaves missing fields zero.
// Channels, functions, complex numbers, unsafe pointers and structs whose
// fields are all unexported are refused, with an error that names the
// field that holds one ("manager: cannot encode field
// Order.Items[].Callback: func type").
//
// User types are registered by name with RegisterType; their exported
// methods become callable through an *Object proxy (Object.Call, or the
// typed Call function), and nothing else is. A method that returns a value
// of a registered type creates a new shared object and returns a proxy.
//
// # Proxies
//
// A proxy is a handle to one counted reference. Proxies are safe for
// concurrent use by many goroutines, and one connection carries all of a
// client's calls at once (requests carry ids), so a blocked Queue.Get does
// not hold up other calls. Proxies nest: a proxy stored in a shared
// container is a reference held by the container, and reading it back
// gives a proxy again (d["supplies"]["blankets"] = 5 works). A proxy can
// be an argument of a child process (it implements the process package's
// handle contract); the child connects to the server on its first call.
//
// Blocking calls (Lock.Acquire, Queue.Get, Event.Wait, Barrier.Wait,
// Condition.Wait, JoinableQueue.Join, custom methods taking a
// context.Context) wait in the server and take a context: when it ends,
// the client asks the server to cancel the wait, and the call returns
// ctx.Err() having taken nothing (or its result, if it completed first).
//
// # Lifetime
//
// An object lives while a reference to it exists: from a connection (its
// proxies) or from a shared container. References are counted per
// connection, so when a client closes its Client, exits or is killed, the
// server drops all its references and frees the objects no one else
// references. A proxy dropped without Release gives its reference back
// with the client's next call (runtime cleanup). Reference cycles between
// containers (a list appended to itself) live until the server stops.
//
// Unlike CPython's, the manager's locks know their holder's connection:
// when a client dies holding a Lock or RLock, the lock is released and the
// next acquirer's Acquire returns ErrOwnerDead while holding it, as a
// robust mutex does. Semaphores have no holder, and the tokens a dead
// client took are lost, as in CPython, unless the semaphore is an
// OwnedSemaphore: its permits belong to the connection that acquired them,
// only that connection may release them, and the server gives them back
// (to waiting clients first) when the connection ends, SIGKILL included.
//
// # Errors
//
// An error raised in the server reaches the caller as a *RemoteError with
// the server-side type and message (and the stack of a panic); it matches
// with errors.Is the sentinels of the server-side chain: ErrKeyNotFound
// (Python's KeyError), ErrIndexOutOfRange, ErrEmpty, ErrFull, ErrNotHeld,
// ErrBrokenBarrier, ErrUnknownType, ErrUnknownMethod, ErrBadArgs, ... A
// custom type's methods keep the identity of their own errors too when
// those are registered with package ipc/remote (remote.Register for
// sentinels, remote.RegisterType for error types: errors.As then gives the
// value with its exported fields).
//
// # CPython managers
//
// ConnectPython makes a PyClient of a manager that CPython serves
// (SyncManager().start(), or a BaseManager's get_server().serve_forever()
// on a unix socket or TCP), speaking CPython's own protocol with the
// ipc/pickle codec, so the Python side needs only its standard library.
// PyDict, PyList, PyQueue, PyLock, PyEvent, PyValue and PyNamespace are
// typed proxies to its builtin typeids ("dict", "list", "Queue",
// "JoinableQueue", "Lock", "RLock", "Semaphore", "BoundedSemaphore",
// "Event", "Value", "Namespace"), and the first three to objects it
// publishes by name
// (BaseManager.register("get_queue", callable=...)): Create(ctx,
// "get_queue") then PyQueueFrom. Python's exceptions match the sentinels
// below (KeyError is ErrKeyNotFound, queue.Empty is ErrEmpty...).
// PROTOCOL.md, "CPython managers", describes the exchange.
//
// # CPython clients of a Go server
//
// Server.ServePython serves CPython's manager protocol on a listener of
// its own (Listen makes one; its handshake is CPython's), next to Serve
// for Go clients, on the same objects:
//
//	srv := manager.NewServer()
//	lg, _ := manager.Listen("unix", goPath, manager.Authkey(key))
//	lp, _ := manager.Listen("tcp", "127.0.0.1:50000", manager.Authkey(key))
//	srv.PublishNew(ctx, "get_queue", "Queue", 0)
//	go srv.Serve(ctx, lg)
//	go srv.ServePython(ctx, lp)
//
// A Python program then uses CPython's own classes:
// SyncManager(address=("127.0.0.1", 50000), authkey=key).connect(), its
// typeids dict, list, Namespace, Value, Queue, JoinableQueue, Lock,
// RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier, and every name
// the server publishes as a typeid registered without a callable
// (M.register("get_queue"), then m.get_queue()). An object a Go client
// made reaches Python by name, or by the id PythonIdent gives (it carries
// the object's capability secret). Python sees the exceptions CPython
// raises (KeyError, IndexError, queue.Empty, RuntimeError for a lock not
// held...), other failures as a RemoteError with the Go message. A Python
// thread's locks are released when its connection ends, its process
// killed included (a Go acquirer is then told ErrOwnerDead). Values are
// the server's: Python tuples and sets come back as lists, dict keys are
// scalars, ints fit in 64 bits; a pickle naming any global outside
// ipc/pickle's allowlist is refused. PROTOCOL.md, "CPython clients of a
// Go server", has the details.
//
// # Concurrency
//
// Server, Client, Manager and every proxy are safe for concurrent use.
// Methods of a registered type run concurrently (each call in its own
// goroutine, like net/rpc), so such a type must guard its state.
package manager
