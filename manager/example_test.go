// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/manager"
	"github.com/multiproc/multiproc/process"
)

// exampleWorker runs in a child process: it receives the proxies as
// arguments and changes the shared objects through them.
var exampleWorker = process.Register("example.manager.worker",
	func(ctx context.Context, d *manager.Dict[string, float64], l *manager.List[int]) error {
		if err := d.Set(ctx, "1", 1); err != nil {
			return err
		}
		if err := d.Set(ctx, "2", 2); err != nil {
			return err
		}
		if err := d.Set(ctx, "0.25", 0); err != nil {
			return err
		}
		return l.Reverse(ctx)
	})

// The recipe of Python's documentation: a dict and a list in a manager
// process, changed by another process.
func Example() {
	ctx := context.Background()
	m, err := manager.Start(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	d, _ := manager.NewDict[string, float64](ctx, m.Client)
	l, _ := manager.NewList(ctx, m.Client, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)

	p := &process.Process{Func: exampleWorker, Args: []any{d, l}}
	if err := p.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	if err := p.Wait(); err != nil {
		fmt.Println(err)
		return
	}
	items, _ := d.Items(ctx)
	for k, v := range items {
		fmt.Println(k, v)
	}
	fmt.Println(l.Copy(ctx))
	// Output:
	// 1 1
	// 2 2
	// 0.25 0
	// [9 8 7 6 5 4 3 2 1 0] <nil>
}

// A manager serving remote clients over TCP: a queue that any process
// knowing the address and the authkey can use.
func ExampleConnect() {
	ctx := context.Background()
	key := []byte("a secret shared with the clients")

	// The server side (e.g. `mp manager serve`).
	l, err := manager.Listen("tcp", "127.0.0.1:0", manager.Authkey(key))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := manager.NewServer()
	defer srv.Close()
	go srv.Serve(ctx, l)
	addr := l.Addr().String()

	// A client somewhere else.
	c, err := manager.Connect(ctx, "tcp", addr, manager.Authkey(key))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	q, _ := manager.NewQueue[string](ctx, c, 0)
	q.Put(ctx, "hello")
	fmt.Println(q.Get(ctx))

	// A client with the wrong key gets nothing.
	_, err = manager.Connect(ctx, "tcp", addr, manager.Authkey([]byte("wrong")))
	fmt.Println(err != nil)
	// Output:
	// hello <nil>
	// true
}

// MathsClass is a user type shared through a manager (the recipe of
// Python's BaseManager.register documentation).
type MathsClass struct {
	mu      sync.Mutex
	history []string
}

func (m *MathsClass) Add(x, y int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.history = append(m.history, "add")
	return x + y
}

func (m *MathsClass) Div(x, y int) (int, error) {
	if y == 0 {
		return 0, errors.New("division by zero")
	}
	return x / y, nil
}

func (m *MathsClass) History() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.history)
}

var _ = manager.RegisterType("Maths", func() *MathsClass { return &MathsClass{} })

func ExampleRegisterType() {
	ctx := context.Background()
	m, err := manager.Start(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	maths, err := m.Create(ctx, "Maths")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(manager.Call[int](ctx, maths, "Add", 4, 3))
	_, err = manager.Call[int](ctx, maths, "Div", 1, 0)
	fmt.Println(err)
	fmt.Println(manager.Call[[]string](ctx, maths, "History"))
	_, err = maths.Call(ctx, "Exec", "rm -rf /")
	fmt.Println(errors.Is(err, manager.ErrUnknownMethod))
	// Output:
	// 7 <nil>
	// manager: remote *errors.errorString: division by zero
	// [add] <nil>
	// true
}

// A remote manager over TLS: the server has a certificate, clients trust
// the CA that signed it, and the authkey handshake runs inside TLS. A
// client without TLS gets nothing.
func ExampleTLS() {
	ctx := context.Background()
	key := []byte("a secret shared with the clients")
	// A CA and a certificate for 127.0.0.1, made for the example; a real
	// server loads its own (tls.LoadX509KeyPair), and clients the CA's
	// certificate (x509.CertPool.AppendCertsFromPEM).
	certs, err := mptest.MakeTLSCerts()
	if err != nil {
		fmt.Println(err)
		return
	}

	// The server side.
	l, err := manager.Listen("tcp", "127.0.0.1:0", manager.Authkey(key),
		manager.TLS(&tls.Config{Certificates: []tls.Certificate{certs.Server}}))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := manager.NewServer()
	defer srv.Close()
	go srv.Serve(ctx, l)
	addr := l.Addr().String()

	// A client that trusts the CA.
	c, err := manager.Connect(ctx, "tcp", addr, manager.Authkey(key),
		manager.TLS(&tls.Config{RootCAs: certs.CA}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	d, _ := manager.NewDict(ctx, c, map[string]int{"answer": 42})
	fmt.Println(d.Get(ctx, "answer"))

	// A client that does not trust the server's certificate gets nothing.
	_, err = manager.Connect(ctx, "tcp", addr, manager.Authkey(key), manager.TLS(&tls.Config{}))
	var verr *tls.CertificateVerificationError
	fmt.Println(errors.As(err, &verr))
	// Output:
	// 42 <nil>
	// true
}

// Stock is a struct a shared dict holds: its exported fields travel,
// nested structs and slices included.
type Stock struct {
	Name     string
	Count    int
	Supplier *Supplier
	Sizes    []string
}

type Supplier struct{ Name, Country string }

// exampleRestock runs in a child process and changes a struct in the dict.
var exampleRestock = process.Register("example.manager.restock",
	func(ctx context.Context, d *manager.Dict[string, Stock]) error {
		s, err := d.Get(ctx, "blankets")
		if err != nil {
			return err
		}
		s.Count += 10
		s.Sizes = append(s.Sizes, "XL")
		return d.Set(ctx, "blankets", s)
	})

// A typed dict whose values are structs, changed by another process; a
// struct holding a func or a channel is refused, naming the field.
func ExampleDict_structs() {
	ctx := context.Background()
	m, err := manager.Start(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	d, _ := manager.NewDict[string, Stock](ctx, m.Client)
	d.Set(ctx, "blankets", Stock{Name: "blankets", Count: 5, Supplier: &Supplier{"Wool & Co", "NZ"}, Sizes: []string{"S", "M"}})

	p := &process.Process{Func: exampleRestock, Args: []any{d}}
	if err := p.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	if err := p.Wait(); err != nil {
		fmt.Println(err)
		return
	}
	s, err := d.Get(ctx, "blankets")
	fmt.Println(s.Count, s.Supplier.Name, s.Sizes, err)

	type Job struct {
		Name string
		Run  func()
	}
	jobs, _ := manager.NewList[Job](ctx, m.Client)
	fmt.Println(jobs.Append(ctx, Job{Name: "backup"}))
	// Output:
	// 15 Wool & Co [S M XL] <nil>
	// manager: cannot encode field Job.Run: func type
}

// exampleProducer and exampleConsumer are separate programs in the
// recipe; here, child processes that know only the server's address and
// authkey.
var (
	exampleProducer = process.Register("example.manager.producer", func(ctx context.Context, addr string, key []byte) error {
		c, err := manager.Connect(ctx, "tcp", addr, manager.Authkey(key))
		if err != nil {
			return err
		}
		defer c.Close()
		jobs, err := manager.Lookup[*manager.Queue[string]](ctx, c, "jobs")
		if err != nil {
			return err
		}
		for _, j := range []string{"wash", "dry", "fold", ""} {
			if err := jobs.Put(ctx, j); err != nil {
				return err
			}
		}
		return nil
	})
	exampleConsumer = process.Register("example.manager.consumer", func(ctx context.Context, addr string, key []byte) error {
		c, err := manager.Connect(ctx, "tcp", addr, manager.Authkey(key))
		if err != nil {
			return err
		}
		defer c.Close()
		jobs, err := manager.Lookup[*manager.Queue[string]](ctx, c, "jobs")
		if err != nil {
			return err
		}
		for {
			j, err := jobs.Get(ctx)
			if err != nil || j == "" {
				return err
			}
			fmt.Println("done:", j)
		}
	})
)

// Python's "Using a remote manager" recipe: a server publishes a queue
// under a name; a producer and a consumer, separate processes that know
// only the address and the authkey, look it up by that name.
func ExampleLookup() {
	ctx := context.Background()
	key := []byte("abracadabra")
	l, err := manager.Listen("tcp", "127.0.0.1:0", manager.Authkey(key))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := manager.NewServer()
	defer srv.Close()
	if err := srv.PublishNew(ctx, "jobs", "Queue", 0); err != nil {
		fmt.Println(err)
		return
	}
	go srv.Serve(ctx, l)

	addr := l.Addr().String()
	for _, fn := range []*process.Func{exampleProducer, exampleConsumer} {
		p := &process.Process{Func: fn, Args: []any{addr, key}}
		if err := p.Start(ctx); err != nil {
			fmt.Println(err)
			return
		}
		if err := p.Wait(); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Output:
	// done: wash
	// done: dry
	// done: fold
}

// Create-if-absent: the first caller makes the object and publishes it;
// every later one (in any process) gets that same object.
func ExampleGetOrCreate() {
	ctx := context.Background()
	m, err := manager.Start(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	newCounter := func(ctx context.Context) (*manager.Value[int], error) {
		return manager.NewValue(ctx, m.Client, 0)
	}
	for range 3 {
		n, created, err := manager.GetOrCreate(ctx, m.Client, "visits", newCounter)
		if err != nil {
			fmt.Println(err)
			return
		}
		v, _ := n.Add(ctx, 1)
		fmt.Println(v, created)
		n.Release(ctx) // the name keeps the counter
	}
	// Output:
	// 1 true
	// 2 false
	// 3 false
}
