// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/ipc/pickle"
	"github.com/multiproc/multiproc/manager"
)

// pyManager serves a CPython SyncManager with two objects published by
// name, as in Python's documentation: get_queue (a queue.Queue) and
// get_log (a list). argv: family ("tcp" or "unix"), authkey, socket path.
// It prints "READY <address>" and serves until a shutdown request.
const pyManager = `
import queue, sys
from multiprocessing.managers import SyncManager, ListProxy
shared_q = queue.Queue()
shared_log = []
class M(SyncManager): pass
M.register('get_queue', callable=lambda: shared_q)
M.register('get_log', callable=lambda: shared_log, proxytype=ListProxy)
family, key = sys.argv[1], sys.argv[2].encode()
addr = ('127.0.0.1', 0) if family == 'tcp' else sys.argv[3]
srv = M(address=addr, authkey=key).get_server()
a = srv.address
print('READY', a if family == 'unix' else '%s:%d' % a, flush=True)
srv.serve_forever()
`

// pyManagerClient connects to that manager with CPython's own client:
// it puts argv[3:] on get_queue (as ints), then gets and prints as many
// items as argv says in "take N".
const pyManagerClient = `
import sys
from multiprocessing.managers import SyncManager, ListProxy
class M(SyncManager): pass
M.register('get_queue')
M.register('get_log', proxytype=ListProxy)
family, addr, key, take = sys.argv[1], sys.argv[2], sys.argv[3].encode(), int(sys.argv[4])
if family == 'tcp':
    host, port = addr.rsplit(':', 1)
    addr = (host, int(port))
m = M(address=addr, authkey=key)
m.connect()
q = m.get_queue()
got = [q.get(timeout=30) for _ in range(take)]
m.get_log().append('python took %d' % take)
q.put({'from': 'python', 'got': got})
print('GOT', got, flush=True)
`

type pyServer struct {
	cmd     *exec.Cmd
	network string
	addr    string
	key     []byte
}

func startPyManager(t testing.TB, version, network string) *pyServer {
	t.Helper()
	key := []byte("py-manager-key")
	sock := filepath.Join(t.TempDir(), "m")
	cmd := exec.Command(mptest.Python(t), "-c", pyManager, network, string(key), sock)
	if version != "" {
		cmd.Env = append(os.Environ(), "PYENV_VERSION="+version)
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "READY ")
	if err != nil || !ok {
		t.Fatalf("python manager: %q, %v", line, err)
	}
	return &pyServer{cmd: cmd, network: network, addr: addr, key: key}
}

func (s *pyServer) connect(t testing.TB) *manager.PyClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := manager.ConnectPython(ctx, s.network, s.addr, manager.Authkey(s.key))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func pyVersions(t *testing.T) []string {
	vs := []string{""}
	for _, v := range mptest.PythonVersions() {
		if v == "3.12.1" || v == "3.13.0" {
			vs = append(vs, v)
		}
	}
	return vs
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A Go client uses a CPython SyncManager's dict through PyDict: every
// operation, Python's KeyError as ErrKeyNotFound, and Release frees it.
func TestPyClientDict(t *testing.T) {
	mptest.Python(t)
	for _, v := range pyVersions(t) {
		for _, network := range []string{"tcp", "unix"} {
			if v != "" && network == "unix" {
				continue // the protocol does not depend on the transport
			}
			t.Run(pyName(v)+"/"+network, func(t *testing.T) {
				ctx := testCtx(t)
				c := startPyManager(t, v, network).connect(t)
				n0, err := c.NumberOfObjects(ctx)
				if err != nil {
					t.Fatal(err)
				}
				d, err := manager.NewPyDict[string, any](ctx, c)
				if err != nil {
					t.Fatal(err)
				}
				if n, _ := c.NumberOfObjects(ctx); n != n0+1 {
					t.Errorf("objects after create: %d, want %d", n, n0+1)
				}
				if err := d.Set(ctx, "job", 7); err != nil {
					t.Fatal(err)
				}
				if err := d.Set(ctx, "args", []any{1.5, nil}); err != nil {
					t.Fatal(err)
				}
				if err := d.Update(ctx, map[string]any{"big": pickle.Tuple{1, "x"}}); err != nil {
					t.Fatal(err)
				}
				got, err := d.Get(ctx, "job")
				if err != nil || got != int64(7) {
					t.Errorf("Get job: %v %v", got, err)
				}
				if ok, err := d.Contains(ctx, "args"); !ok || err != nil {
					t.Errorf("Contains args: %v %v", ok, err)
				}
				if n, err := d.Len(ctx); n != 3 || err != nil {
					t.Errorf("Len: %d %v", n, err)
				}
				keys, err := d.Keys(ctx)
				if err != nil || !slices.Equal(keys, []string{"job", "args", "big"}) {
					t.Errorf("Keys: %v %v", keys, err)
				}
				m, err := d.Copy(ctx)
				if err != nil || len(m) != 3 || !pickle.Equal(m["big"], pickle.Tuple{int64(1), "x"}) {
					t.Errorf("Copy: %v %v", m, err)
				}
				_, err = d.Get(ctx, "missing")
				var exc *pickle.Exception
				if !errors.Is(err, manager.ErrKeyNotFound) || !errors.As(err, &exc) || exc.Name != "KeyError" {
					t.Errorf("missing key: %v", err)
				}
				if v, err := d.GetOr(ctx, "nope", "default"); v != "default" || err != nil {
					t.Errorf("GetOr: %v %v", v, err)
				}
				if v, err := d.SetDefault(ctx, "sd", 5); v != int64(5) || err != nil {
					t.Errorf("SetDefault: %v %v", v, err)
				}
				if v, err := d.Pop(ctx, "sd"); v != int64(5) || err != nil {
					t.Errorf("Pop: %v %v", v, err)
				}
				if _, err := d.Pop(ctx, "sd"); !errors.Is(err, manager.ErrKeyNotFound) {
					t.Errorf("Pop of a missing key: %v", err)
				}
				if err := d.Delete(ctx, "job"); err != nil {
					t.Error(err)
				}
				if err := d.Delete(ctx, "job"); !errors.Is(err, manager.ErrKeyNotFound) {
					t.Errorf("second delete: %v", err)
				}
				if _, err := d.Object().Call(ctx, "no_such_method"); !errors.Is(err, manager.ErrUnknownMethod) {
					t.Errorf("unexposed method: %v", err)
				}
				if err := d.Release(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := d.Get(ctx, "args"); !errors.Is(err, manager.ErrReleased) {
					t.Errorf("after release: %v", err)
				}
				if n, _ := c.NumberOfObjects(ctx); n != n0 {
					t.Errorf("objects after release: %d, want %d", n, n0)
				}
			})
		}
	}
}

func pyName(v string) string {
	if v == "" {
		return "default"
	}
	return v
}

func TestPyClientList(t *testing.T) {
	ctx := testCtx(t)
	c := startPyManager(t, "", "unix").connect(t)
	l, err := manager.NewPyList(ctx, c, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	if err := l.Append(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := l.Extend(ctx, 4, 5); err != nil {
		t.Fatal(err)
	}
	if err := l.Set(ctx, 0, 10); err != nil {
		t.Fatal(err)
	}
	if v, err := l.Get(ctx, -1); v != 5 || err != nil {
		t.Errorf("Get(-1): %v %v", v, err)
	}
	if _, err := l.Get(ctx, 100); !errors.Is(err, manager.ErrIndexOutOfRange) {
		t.Errorf("Get(100): %v", err)
	}
	if v, err := l.Pop(ctx); v != 5 || err != nil {
		t.Errorf("Pop: %v %v", v, err)
	}
	all, err := l.Copy(ctx)
	if err != nil || !slices.Equal(all, []int{10, 2, 3, 4}) {
		t.Errorf("Copy: %v %v", all, err)
	}
	if err := l.Insert(ctx, 1, 7); err != nil {
		t.Fatal(err)
	}
	if i, err := l.Index(ctx, 7); i != 1 || err != nil {
		t.Errorf("Index(7): %v %v", i, err)
	}
	if _, err := l.Index(ctx, 99); !errors.Is(err, manager.ErrNotFound) {
		t.Errorf("Index(99): %v", err)
	}
	if n, err := l.Count(ctx, 7); n != 1 || err != nil {
		t.Errorf("Count(7): %v %v", n, err)
	}
	if ok, err := l.Contains(ctx, 7); !ok || err != nil {
		t.Errorf("Contains(7): %v %v", ok, err)
	}
	if err := l.Remove(ctx, 7); err != nil {
		t.Error(err)
	}
	if err := l.Remove(ctx, 7); !errors.Is(err, manager.ErrNotFound) {
		t.Errorf("second Remove(7): %v", err)
	}
	if err := l.Delete(ctx, 3); err != nil {
		t.Error(err)
	}
	if err := l.Delete(ctx, 30); !errors.Is(err, manager.ErrIndexOutOfRange) {
		t.Errorf("Delete(30): %v", err)
	}
	if err := l.Append(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if err := l.Reverse(ctx); err != nil {
		t.Fatal(err)
	}
	if all, err = l.Copy(ctx); err != nil || !slices.Equal(all, []int{4, 3, 2, 10}) {
		t.Errorf("after Reverse: %v %v", all, err)
	}
	if n, err := l.Len(ctx); n != 4 || err != nil {
		t.Errorf("Len: %d %v", n, err)
	}
	// A str in a list of ints does not fit the Go type: a clear error.
	if err := l.Object().CallInto(ctx, new(any), "append", "x"); err != nil {
		t.Fatal(err)
	}
	var te *pickle.TypeError
	if _, err := l.Copy(ctx); !errors.As(err, &te) {
		t.Errorf("Copy with a str in it: %v", err)
	}
}

// A dict's __iter__ comes back as '#PROXY': a new object (Iterator) the
// client owns and can call.
func TestPyClientProxyReply(t *testing.T) {
	ctx := testCtx(t)
	c := startPyManager(t, "", "unix").connect(t)
	d, err := manager.NewPyDict[string, int](ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release(ctx)
	d.Set(ctx, "a", 1)
	d.Set(ctx, "b", 2)
	v, err := d.Object().Call(ctx, "__iter__")
	if err != nil {
		t.Fatal(err)
	}
	it, ok := v.(*manager.PyObject)
	if !ok || it.Token().TypeID != "Iterator" {
		t.Fatalf("__iter__ returned %#v", v)
	}
	var keys []string
	for {
		k, err := it.Call(ctx, "__next__")
		if err != nil {
			var exc *pickle.Exception
			if !errors.As(err, &exc) || exc.Name != "StopIteration" {
				t.Fatalf("__next__: %v", err)
			}
			break
		}
		keys = append(keys, k.(string))
	}
	if !slices.Equal(keys, []string{"a", "b"}) {
		t.Errorf("iterated %v", keys)
	}
	if err := it.Release(ctx); err != nil {
		t.Error(err)
	}
}

// A Go client and a CPython client share a queue and a list published by
// name in a CPython manager: Go puts, Python gets, Python puts, Go gets.
func TestPyClientQueueSharedWithPython(t *testing.T) {
	for _, v := range pyVersions(t) {
		t.Run(pyName(v), func(t *testing.T) {
			ctx := testCtx(t)
			s := startPyManager(t, v, "tcp")
			c := s.connect(t)
			o, err := c.Create(ctx, "get_queue")
			if err != nil {
				t.Fatal(err)
			}
			q := manager.PyQueueFrom[any](o)
			defer q.Release(ctx)
			for i := range 3 {
				if err := q.Put(ctx, i*10); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(mptest.Python(t), "-c", pyManagerClient, s.network, s.addr, string(s.key), "3")
			if v != "" {
				cmd.Env = append(os.Environ(), "PYENV_VERSION="+v)
			}
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("python client: %v", err)
			}
			if got := strings.TrimSpace(string(out)); got != "GOT [0, 10, 20]" {
				t.Errorf("python client: %q", got)
			}
			var reply struct {
				From string  `pickle:"from"`
				Got  []int64 `pickle:"got"`
			}
			item, err := q.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := pickle.New().Convert(item, &reply); err != nil || reply.From != "python" || !slices.Equal(reply.Got, []int64{0, 10, 20}) {
				t.Errorf("python's item: %s, %v", pickle.Repr(item), err)
			}
			lo, err := c.Create(ctx, "get_log")
			if err != nil {
				t.Fatal(err)
			}
			log := manager.PyListFrom[string](lo)
			defer log.Release(ctx)
			if got, err := log.Copy(ctx); err != nil || !slices.Equal(got, []string{"python took 3"}) {
				t.Errorf("log: %v %v", got, err)
			}
		})
	}
}

func TestPyClientQueueBlocking(t *testing.T) {
	ctx := testCtx(t)
	c := startPyManager(t, "", "unix").connect(t)
	q, err := manager.NewPyQueue[string](ctx, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Release(ctx)
	if _, err := q.GetNowait(ctx); !errors.Is(err, manager.ErrEmpty) {
		t.Errorf("GetNowait on empty: %v", err)
	}
	// Get waits until ctx ends, then says why.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = q.Get(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get on empty with a deadline: %v", err)
	}
	if err := q.Put(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	if err := q.PutNowait(ctx, "two"); !errors.Is(err, manager.ErrFull) {
		t.Errorf("PutNowait on full: %v", err)
	}
	// The Get cut short by its deadline took nothing: "one" is still there.
	if v, err := q.Get(ctx); v != "one" || err != nil {
		t.Fatalf("Get after a cancelled Get: %q, %v", v, err)
	}
	// A Get waiting in another goroutine takes what a Put adds.
	got := make(chan string, 1)
	go func() {
		v, err := q.Get(ctx)
		if err != nil {
			v = err.Error()
		}
		got <- v
	}()
	if err := q.Put(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "late" {
		t.Errorf("blocked Get: %q", v)
	}
	if n, err := q.Qsize(ctx); n != 0 || err != nil {
		t.Errorf("Qsize: %d %v", n, err)
	}
}

func TestPyClientErrors(t *testing.T) {
	ctx := testCtx(t)
	s := startPyManager(t, "", "unix")
	if _, err := manager.ConnectPython(ctx, s.network, s.addr, manager.Authkey([]byte("wrong"))); !errors.Is(err, ipc.ErrAuthentication) {
		t.Errorf("wrong authkey: %v", err)
	}
	if _, err := manager.ConnectPython(ctx, s.network, s.addr); err == nil {
		t.Errorf("no authkey accepted")
	}
	c := s.connect(t)
	if _, err := c.Create(ctx, "no_such_type"); err == nil {
		t.Errorf("unknown typeid accepted")
	} else {
		var re *manager.RemoteError
		if !errors.As(err, &re) {
			t.Errorf("unknown typeid: %v", err)
		}
	}
	// A Go value with no Python form fails before anything is sent, and
	// the connection goes on.
	d, err := manager.NewPyDict[string, any](ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "f", func() {}); err == nil {
		t.Errorf("a func was sent")
	}
	if err := d.Set(ctx, "ok", 1); err != nil {
		t.Errorf("after a refused value: %v", err)
	}
	d.Release(ctx)
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("python manager still running after shutdown")
	}
	if _, err := c.Create(ctx, "dict"); !errors.Is(err, manager.ErrClosed) {
		t.Errorf("after shutdown: %v", err)
	}
}

// A CPython manager SIGKILLed while a Go client waits in a Get and holds
// idle connections: every call fails at once instead of hanging.
func TestPyClientManagerKilled(t *testing.T) {
	ctx := testCtx(t)
	s := startPyManager(t, "", "unix")
	c := s.connect(t)
	d, err := manager.NewPyDict[string, int](ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "a", 1); err != nil { // leaves an idle method connection
		t.Fatal(err)
	}
	q, err := manager.NewPyQueue[int](ctx, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := q.Get(ctx)
		got <- err
	}()
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	s.cmd.Wait()
	select {
	case err := <-got:
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get when the manager died: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Get still waiting after the manager died")
	}
	if _, err := d.Get(ctx, "a"); err == nil {
		t.Errorf("Get on a dead manager succeeded")
	}
	if err := d.Release(ctx); err == nil {
		t.Errorf("Release on a dead manager succeeded")
	}
}

// BenchmarkPyClient measures a Go client's call round trip to a CPython
// SyncManager on a unix socket (CPython's own client against its own
// manager is the kit's manager.dict.get).
func BenchmarkPyClient(b *testing.B) {
	b.Run("dict.get", func(b *testing.B) {
		ctx := context.Background()
		c := startPyManager(b, "", "unix").connect(b)
		d, err := manager.NewPyDict[string, int](ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		defer d.Release(ctx)
		if err := d.Set(ctx, "k", 1); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.Get(ctx, "k"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "us")
	})
}
