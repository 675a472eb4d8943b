// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/manager"
)

// pyPrelude connects CPython's own SyncManager to our server: argv[1] is
// "host:port", argv[2] the authkey. attach(typeid, ident) builds the
// proxy CPython would build for an object a Go client made (the ident
// comes from manager.PythonIdent).
const pyPrelude = `
import sys, threading, time, queue
from multiprocessing.managers import SyncManager, Token, RemoteError
key = bytes.fromhex(sys.argv[2])
if sys.argv[1].startswith('/'):
    addr = sys.argv[1]
else:
    host, port = sys.argv[1].rsplit(':', 1)
    addr = (host, int(port))
m = SyncManager(address=addr, authkey=key)
m.connect()
def attach(typeid, ident):
    proxytype = m._registry[typeid][-1]
    return proxytype(Token(typeid, m.address, ident), m._serializer, manager=m, authkey=m._authkey)
def expect(exc, f, *a, **k):
    try:
        f(*a, **k)
    except exc as e:
        return e
    raise AssertionError('%s did not raise %s' % (f, exc))
`

// goPyServer is a Server that Go clients reach on a unix socket and
// CPython clients on TCP (or, with pyNetwork("unix"), a unix socket).
type goPyServer struct {
	*testServer
	pyAddr string
}

func startGoPyServer(t testing.TB, opts ...manager.Option) *goPyServer {
	return startGoPyServerOn(t, "tcp", opts...)
}

func startGoPyServerOn(t testing.TB, network string, opts ...manager.Option) *goPyServer {
	t.Helper()
	ts := startServer(t, "unix")
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "py.sock")
	}
	l, err := manager.Listen(network, addr, append([]manager.Option{manager.Authkey(ts.key)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ts.srv.ServePython(context.Background(), l) }()
	t.Cleanup(func() {
		ts.srv.Close()
		if err := <-served; !errors.Is(err, manager.ErrClosed) {
			t.Errorf("ServePython returned %v, want ErrClosed", err)
		}
	})
	return &goPyServer{testServer: ts, pyAddr: l.Addr().String()}
}

// runPy runs a Python script (after pyPrelude) against s with extra
// arguments, and returns its stdout; a failure fails the test.
func (s *goPyServer) runPy(t *testing.T, version, script string, args ...string) string {
	t.Helper()
	out, err := s.tryPy(t, version, script, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tryPy is runPy for any goroutine: it returns the failure.
func (s *goPyServer) tryPy(t testing.TB, version, script string, args ...string) (string, error) {
	cmd := s.pyCmd(t, version, script, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("python: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	return out.String(), nil
}

func (s *goPyServer) pyCmd(t testing.TB, version, script string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, mptest.Python(t), append([]string{"-c", pyPrelude + script, s.pyAddr, hex.EncodeToString(s.key)}, args...)...)
	if version != "" {
		cmd.Env = append(os.Environ(), "PYENV_VERSION="+version)
	}
	return cmd
}

func ident(t *testing.T, p manager.Proxy) string {
	t.Helper()
	id, err := manager.PythonIdent(p)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// The headline: a Go producer and a CPython consumer share one queue and
// one dict through a Go manager. The consumer reads what Go wrote and
// writes back into the same dict; objects the consumer creates are
// freed when it drops them.
func TestPyServerGoProducerPythonConsumer(t *testing.T) {
	mptest.Python(t)
	for _, v := range pyVersions(t) {
		t.Run(pyName(v), func(t *testing.T) {
			s := startGoPyServer(t)
			ctx := testCtx(t)
			q, err := manager.NewQueue[map[string]any](ctx, s.client, 0)
			if err != nil {
				t.Fatal(err)
			}
			d, err := manager.NewDict[string, any](ctx, s.client)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Set(ctx, "producer", "go"); err != nil {
				t.Fatal(err)
			}
			n0 := s.srv.NumObjects()
			const consumer = `
q, d = attach('Queue', sys.argv[3]), attach('dict', sys.argv[4])
assert d['producer'] == 'go', d.copy()
total, jobs = 0, []
while True:
    item = q.get(timeout=60)
    if item['job'] < 0:
        break
    total += item['job']
    jobs.append(item['args'])
d['python'] = {'total': total, 'jobs': len(jobs), 'last': jobs[-1]}
e = expect(KeyError, d.__getitem__, 'missing')
assert e.args == ('missing',), e.args
expect(queue.Empty, q.get_nowait)
mine = m.dict(a=1)
assert dict(mine) == {'a': 1}
del mine
print('DONE', total, flush=True)
`
			outc, errc := make(chan string, 1), make(chan error, 1)
			qid, did := ident(t, q), ident(t, d)
			go func() {
				out, err := s.tryPy(t, v, consumer, qid, did)
				outc <- out
				errc <- err
			}()
			want := 0
			for i := 1; i <= 100; i++ {
				want += i
				if err := q.Put(ctx, map[string]any{"job": i, "args": []any{i, "x", 1.5, nil}}); err != nil {
					t.Fatal(err)
				}
			}
			if err := q.Put(ctx, map[string]any{"job": -1}); err != nil {
				t.Fatal(err)
			}
			out := <-outc
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "DONE 5050") {
				t.Fatalf("python said %q", out)
			}
			got, err := d.Get(ctx, "python")
			if err != nil {
				t.Fatal(err)
			}
			m, _ := got.(map[any]any)
			if m["total"] != int64(want) || m["jobs"] != int64(100) {
				t.Errorf("python wrote %#v", got)
			}
			if last, _ := m["last"].([]any); len(last) != 4 || last[0] != int64(100) || last[1] != "x" || last[2] != 1.5 || last[3] != nil {
				t.Errorf("last job as python saw it: %#v", m["last"])
			}
			// Python's own dict, and the references its proxies took,
			// are gone once the Python process has dropped them.
			if n := s.srv.NumObjects(); n != n0 {
				t.Errorf("server holds %d objects after the python client, want %d", n, n0)
			}
			runtime.KeepAlive(q)
		})
	}
}

// CPython's SyncManager proxies work against the Go server: every
// builtin typeid with its exceptions.
func TestPyServerSyncManagerTypes(t *testing.T) {
	mptest.Python(t)
	const script = `
n0 = m._number_of_objects()
d = m.dict({'a': 1}, b=[1, 2])
d['c'] = {'x': (1, 2)}
assert d['a'] == 1 and d.get('zz') is None and d.get('zz', 5) == 5
assert 'a' in d and 'q' not in d and len(d) == 3
assert sorted(d.keys()) == ['a', 'b', 'c'], d.keys()
assert sorted(iter(d)) == ['a', 'b', 'c']
assert sorted(d.items())[0] == ('a', 1), d.items()
assert d.setdefault('a', 9) == 1 and d.setdefault('n', 9) == 9
assert d.pop('n') == 9 and d.pop('n', 'dflt') == 'dflt'
d.update({'u': 1}, v=2)
assert d.copy()['c'] == {'x': [1, 2]}, d.copy()
del d['u']
expect(KeyError, d.__delitem__, 'u')
expect(TypeError, d.__setitem__, [1], 2)
assert d.popitem() == ('v', 2)
d.clear()
assert len(d) == 0 and str(d) == '{}', str(d)

l = m.list([1, 2, 3])
l.append(4); l.extend([5, 6]); l += [7]
assert l[0] == 1 and l[-1] == 7 and len(l) == 7
l[0] = 10
assert list(l) == [10, 2, 3, 4, 5, 6, 7]
assert l.pop() == 7 and l.pop(0) == 10
l.insert(0, 0); l.remove(0)
assert l.index(3) == 1 and l.count(2) == 1 and 3 in l
expect(ValueError, l.index, 99)
expect(IndexError, l.__getitem__, 99)
del l[0]
l.reverse()
assert l._getvalue() == [6, 5, 4, 3], l._getvalue()
assert l * 2 == [6, 5, 4, 3] * 2 and l + [1] == [6, 5, 4, 3, 1]

ns = m.Namespace(x=1)
ns.y = 'two'
assert ns.x == 1 and ns.y == 'two'
del ns.x
expect(AttributeError, getattr, ns, 'x')

v = m.Value('i', 5)
assert v.value == 5
v.value = 7
assert v.get() == 7

q = m.Queue(2)
q.put(1); q.put_nowait(2)
assert q.full() and q.qsize() == 2
expect(queue.Full, q.put, 3, timeout=0.05)
expect(queue.Full, q.put_nowait, 3)
assert q.get() == 1 and q.get(timeout=1) == 2 and q.empty()
expect(queue.Empty, q.get, timeout=0.05)
expect(queue.Empty, q.get, False)

jq = m.JoinableQueue()
jq.put('job')
def work():
    jq.get(); jq.task_done()
t = threading.Thread(target=work); t.start()
jq.join(); t.join()
expect(ValueError, jq.task_done)

lock = m.Lock()
assert lock.acquire() and not lock.acquire(False) and not lock.acquire(True, 0.05)
lock.release()
expect(RuntimeError, lock.release)
with lock:
    pass
rl = m.RLock()
assert rl.acquire() and rl.acquire()
rl.release(); rl.release()
expect(RuntimeError, rl.release)
s = m.Semaphore(2)
assert s.acquire() and s.acquire() and not s.acquire(timeout=0.05)
s.release(); s.release()
bs = m.BoundedSemaphore(1)
expect(ValueError, bs.release)

ev = m.Event()
assert not ev.is_set() and ev.wait(0.05) is False
threading.Timer(0.1, ev.set).start()
assert ev.wait(30) is True and ev.is_set()
ev.clear()

c = m.Condition()
box = []
def notifier():
    with c:
        box.append(1)
        c.notify_all()
with c:
    threading.Thread(target=notifier).start()
    assert c.wait_for(lambda: box, 30)
    assert c.wait(0.05) is False
expect(RuntimeError, c.notify)

b = m.Barrier(2)
assert b.parties == 2 and b.n_waiting == 0 and not b.broken
res = []
t = threading.Thread(target=lambda: res.append(b.wait(30))); t.start()
res.append(b.wait(30)); t.join()
assert sorted(res) == [0, 1], res
expect(RuntimeError, b.wait, 0.05)
assert b.broken
b.reset()
assert not b.broken

del d, l, ns, v, q, jq, lock, rl, s, bs, ev, c, b
import gc; gc.collect()
assert m._number_of_objects() == n0, (m._number_of_objects(), n0)
print('OK', flush=True)
`
	for _, v := range pyVersions(t) {
		t.Run(pyName(v), func(t *testing.T) {
			s := startGoPyServer(t)
			if out := s.runPy(t, v, script); !strings.Contains(out, "OK") {
				t.Fatalf("python said %q", out)
			}
		})
	}
}

// A Python client with the wrong authkey is refused, and the server goes
// on serving the right one.
func TestPyServerWrongAuthkey(t *testing.T) {
	mptest.Python(t)
	s := startGoPyServer(t)
	const script = `
from multiprocessing import AuthenticationError
bad = SyncManager(address=addr, authkey=b'wrong key')
try:
    bad.connect()
except AuthenticationError:
    d = m.dict(after='refusal')
    assert d['after'] == 'refusal'
    print('REFUSED', flush=True)
`
	// The prelude connects with the right key first; then the wrong one.
	if out := s.runPy(t, "", script); !strings.Contains(out, "REFUSED") {
		t.Fatalf("python said %q", out)
	}
}

// A pickle naming a global outside the allowlist is refused with a
// RemoteError and changes nothing; the connection goes on. Deep nesting
// is a bounded error, and a frame over the server's maximum closes only
// that connection.
func TestPyServerRefusesBadPayloads(t *testing.T) {
	mptest.Python(t)
	s := startGoPyServer(t, manager.MaxFrameSize(1<<20))
	const script = `
import os
class Evil:
    def __reduce__(self):
        return (os.system, ('echo pwned >&2',))
d = m.dict()
e = expect(RemoteError, d.__setitem__, 'k', Evil())
assert 'not allowed' in str(e), str(e)
e = expect(RemoteError, d.__setitem__, 'k', Evil)
d['k'] = 'fine'
assert d['k'] == 'fine' and len(d) == 1
deep = []
for _ in range(200):
    deep = [deep]
e = expect(TypeError, d.__setitem__, 'deep', deep)
assert 'deeper' in str(e), str(e)
sys.setrecursionlimit(20000)
deeper = []
for _ in range(3000):
    deeper = [deeper]
e = expect(RemoteError, d.__setitem__, 'deeper', deeper)
assert 'limit' in str(e), str(e)
# A frame over the maximum ends this thread's connection (CPython's
# client keeps using it, so later calls of this thread fail too).
expect((EOFError, OSError), d.__setitem__, 'huge', b'x' * (2 << 20))
def check():
    d2 = m.dict(ok=1)
    assert d2['ok'] == 1 and d['k'] == 'fine'
    print('OK', flush=True)
t = threading.Thread(target=check); t.start(); t.join()
`
	if out := s.runPy(t, "", script); !strings.Contains(out, "OK") {
		t.Fatalf("python said %q", out)
	}
}

// Requests whose text the server quotes in its error, cut inside a
// multi-byte character: a real CPython client gets a RemoteError that
// reads as a str, and its connection stays usable.
func TestPyServerErrorTextCutInsideARune(t *testing.T) {
	mptest.Python(t)
	s := startGoPyServer(t)
	const script = `
from multiprocessing.managers import dispatch
c = m._Client(m._address, authkey=m._authkey)
# A server request whose name the 64-byte cut falls inside (U+0734 is two bytes).
e = expect(RemoteError, dispatch, c, None, 'y' * 63 + '\u0734' * 3, (), {})
assert 'y' * 63 in str(e), str(e)
# A request that is not a tuple: its repr is cut the same way. (A
# server-level connection serves one request, as in CPython.)
c = m._Client(m._address, authkey=m._authkey)
c.send('0' * 62 + '\u0734' * 3)
kind, text = c.recv()
assert kind == '#TRACEBACK' and isinstance(text, str) and '0' * 60 in text, (kind, text)
# The same on a connection serving an object's methods.
d = m.dict(k=1)
ident = d._token.id
c = m._Client(m._address, authkey=m._authkey)
dispatch(c, None, 'accept_connection', ('test',), {})
e = expect(RemoteError, dispatch, c, ident, 'y' * 63 + '\u0734' * 3, (), {})
assert 'y' * 63 in str(e), str(e)
# A key that is not UTF-8 once pickled (a lone surrogate): an error, and
# the connection still answers.
e = expect(RemoteError, dispatch, c, ident, '__getitem__', ('\udcff',), {})
assert 'not valid UTF-8' in str(e), str(e)
assert dispatch(c, ident, '__getitem__', ('k',), {}) == 1
print('OK', flush=True)
`
	if out := s.runPy(t, "", script); !strings.Contains(out, "OK") {
		t.Fatalf("python said %q", out)
	}
}

// A Python client SIGKILLed while holding a manager Lock that a Go
// client made releases it: the Go client's Acquire gets the lock and
// ErrOwnerDead.
func TestPyServerKilledLockHolder(t *testing.T) {
	mptest.Python(t)
	s := startGoPyServer(t)
	ctx := testCtx(t)
	lock, err := manager.NewLock(ctx, s.client)
	if err != nil {
		t.Fatal(err)
	}
	cmd := s.pyCmd(t, "", `
lk = attach('Lock', sys.argv[3])
assert lk.acquire()
print('HELD', flush=True)
time.sleep(600)
`, ident(t, lock))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "HELD") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("python said %q", buf[:n])
	}
	if ok, err := lock.TryAcquire(ctx); ok || err != nil {
		t.Fatalf("TryAcquire while python holds the lock: %v, %v", ok, err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if err := lock.Acquire(ctx); !errors.Is(err, manager.ErrOwnerDead) {
		t.Fatalf("Acquire after the holder died: %v, want ErrOwnerDead", err)
	}
	if err := lock.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// CPython's remote-manager recipe against a Go server: objects the
// server publishes by name are registered typeids on the Python side
// (register('get_queue')), and a Go client looks up the same objects.
// Types registered with RegisterType are typeids too.
func TestPyServerPublishedNames(t *testing.T) {
	mptest.Python(t)
	for _, v := range pyVersions(t) {
		t.Run(pyName(v), func(t *testing.T) {
			s := startGoPyServer(t)
			ctx := testCtx(t)
			if err := s.srv.PublishNew(ctx, "get_queue", "Queue", 0); err != nil {
				t.Fatal(err)
			}
			if err := s.srv.PublishNew(ctx, "get_log", "list"); err != nil {
				t.Fatal(err)
			}
			q, err := manager.Lookup[*manager.Queue[string]](ctx, s.client, "get_queue")
			if err != nil {
				t.Fatal(err)
			}
			for _, job := range []string{"a", "b", "c"} {
				if err := q.Put(ctx, job); err != nil {
					t.Fatal(err)
				}
			}
			n0 := s.srv.NumObjects()
			out := s.runPy(t, v, `
from multiprocessing.managers import ListProxy
class M(SyncManager): pass
M.register('get_queue')
M.register('get_log', proxytype=ListProxy)
M.register('get_nothing')
pm = M(address=addr, authkey=key); pm.connect()
q, log = pm.get_queue(), pm.get_log()
got = [q.get(timeout=30) for _ in range(3)]
log.append('python took %s' % ','.join(got))
q.put('from python')
e = expect(RemoteError, pm.get_nothing)
assert 'unknown type' in str(e), str(e)
# A type registered in Go with RegisterType is a typeid too.
M.register('Counter')
M.register('Iterator')
cnt = pm.Counter(5)
assert cnt.Add(3) == 8 and cnt.Add(-8) == 0
e = expect(RemoteError, pm.Counter, -1)
assert 'negative start' in str(e), str(e)
it = pm.Iterator(1)
assert it.Next() == 0
expect(IndexError, it.Next)
del q, log, cnt, it
print('GOT', got, flush=True)
`)
			if !strings.Contains(out, "GOT ['a', 'b', 'c']") {
				t.Fatalf("python said %q", out)
			}
			if got, err := q.Get(ctx); err != nil || got != "from python" {
				t.Fatalf("Get: %q, %v", got, err)
			}
			log, err := manager.Lookup[*manager.List[string]](ctx, s.client, "get_log")
			if err != nil {
				t.Fatal(err)
			}
			if got, err := log.Copy(ctx); err != nil || len(got) != 1 || got[0] != "python took a,b,c" {
				t.Fatalf("log: %q, %v", got, err)
			}
			if n := s.srv.NumObjects(); n != n0 {
				t.Errorf("server holds %d objects after the python client, want %d", n, n0)
			}
		})
	}
}

// A CPython client killed while it waits in a Go server's q.get() (no
// timeout) does not keep its call: the server notices the hang-up, ends
// the wait and the connection, and the next item goes to a live client.
func TestPyServerKilledWaiter(t *testing.T) {
	mptest.Python(t)
	s := startGoPyServer(t)
	ctx := testCtx(t)
	q, err := manager.NewQueue[string](ctx, s.client, 0)
	if err != nil {
		t.Fatal(err)
	}
	base := s.srv.Stats().Conns
	// The client kills itself while in q.get(); if the get has not
	// reached the server by then, the test proves less but cannot fail.
	cmd := s.pyCmd(t, "", `
import os, signal
q = attach('Queue', sys.argv[3])
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGKILL)).start()
q.get()
`, ident(t, q))
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("python was not killed")
	}
	// Wait for the server to end the dead client's connections (a
	// generous ceiling, not a timing condition).
	deadline := time.Now().Add(30 * time.Second)
	for s.srv.Stats().Conns > base {
		if time.Now().After(deadline) {
			t.Fatalf("server still holds %d connections after the waiter died, want %d", s.srv.Stats().Conns, base)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := q.Put(ctx, "item"); err != nil {
		t.Fatal(err)
	}
	if got, err := q.Get(ctx); err != nil || got != "item" {
		t.Fatalf("Get: %q, %v", got, err)
	}
}

// Our own Go client of CPython managers (PyClient) speaks the same
// protocol to a Go server: dict calls, KeyError as ErrKeyNotFound, the
// object count, and a shutdown request closes the server.
func TestPyServerWithPyClient(t *testing.T) {
	s := startGoPyServer(t)
	ctx := testCtx(t)
	c, err := manager.ConnectPython(ctx, "tcp", s.pyAddr, manager.Authkey(s.key))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := manager.ConnectPython(ctx, "tcp", s.pyAddr, manager.Authkey([]byte("wrong"))); err == nil {
		t.Fatal("a wrong authkey connected")
	}
	n0, err := c.NumberOfObjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, err := manager.NewPyDict[string, int](ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Get(ctx, "a"); err != nil || got != 1 {
		t.Fatalf("Get: %d, %v", got, err)
	}
	if _, err := d.Get(ctx, "zz"); !errors.Is(err, manager.ErrKeyNotFound) {
		t.Fatalf("Get of a missing key: %v, want ErrKeyNotFound", err)
	}
	if n, _ := c.NumberOfObjects(ctx); n != n0+1 {
		t.Errorf("objects: %d, want %d", n, n0+1)
	}
	if err := d.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.NumberOfObjects(ctx); n != n0 {
		t.Errorf("objects after Release: %d, want %d", n, n0)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.srv.Done():
	case <-ctx.Done():
		t.Fatal("the server did not shut down")
	}
}
