// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"bufio"
	"context"
	"errors"
	"iter"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/google/go-cmp/cmp"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/process/starter"
)

var bg = context.Background()

func squares(n int) []int {
	v := make([]int, n)
	for i := range v {
		v[i] = i * i
	}
	return v
}

// _TestPool: map/imap order, chunksizes, empty input.
func TestMapOrder(t *testing.T) {
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(2))
	tests := []struct {
		name string
		n    int
		opts []pool.MapOption
	}{
		{"default", 1000, nil},
		{"chunk1", 100, []pool.MapOption{pool.Chunksize(1)}},
		{"chunk20", 1000, []pool.MapOption{pool.Chunksize(20)}},
		{"chunk-bigger-than-input", 10, []pool.MapOption{pool.Chunksize(100)}},
		{"empty", 0, nil},
		{"empty-chunk1", 0, []pool.MapOption{pool.Chunksize(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := square.Map(bg, p, ints(tt.n), tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(squares(tt.n), got); diff != "" {
				t.Errorf("Map (-want +got):\n%s", diff)
			}
			var st []int
			for v, err := range square.Imap(bg, p, slices.Values(ints(tt.n)), tt.opts...) {
				if err != nil {
					t.Fatal(err)
				}
				st = append(st, v)
			}
			if diff := cmp.Diff(squares(tt.n), st, cmpNilEmpty); diff != "" {
				t.Errorf("Imap (-want +got):\n%s", diff)
			}
			var un []int
			for v, err := range square.ImapUnordered(bg, p, slices.Values(ints(tt.n)), tt.opts...) {
				if err != nil {
					t.Fatal(err)
				}
				un = append(un, v)
			}
			slices.Sort(un)
			if diff := cmp.Diff(squares(tt.n), un, cmpNilEmpty); diff != "" {
				t.Errorf("ImapUnordered (sorted) (-want +got):\n%s", diff)
			}
		})
	}
}

var cmpNilEmpty = cmp.Comparer(func(a, b []int) bool { return slices.Equal(a, b) })

func TestTypes(t *testing.T) {
	p := newPool(t, pool.Workers(2))
	got, err := concat.Map(bg, p, []pool.Args2[string, int]{{A: "ab", B: 2}, {A: "x", B: 0}, {A: "é", B: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"abab", "", "ééé"}, got); diff != "" {
		t.Errorf("starmap (-want +got):\n%s", diff)
	}
	got2, err := pool.Starmap(bg, p, concat, []pool.Args2[string, int]{{A: "-", B: 5}})
	if err != nil || got2[0] != "-----" {
		t.Errorf("Starmap = %q, %v", got2, err)
	}
}

func TestProgress(t *testing.T) {
	p := newPool(t, pool.Workers(2))
	var mu sync.Mutex
	var seen []pool.Progress
	_, err := fail.Map(bg, p, ints(100), pool.Chunksize(7), pool.OnProgress(func(pr pool.Progress) {
		mu.Lock()
		seen = append(seen, pr)
		mu.Unlock()
	}))
	if !errors.Is(err, errBoomRemote) && err == nil {
		t.Fatal("want an error")
	}
	last := seen[len(seen)-1]
	if want := (pool.Progress{Done: 100, Failed: 10, Total: 100}); last != want {
		t.Errorf("last progress = %+v, want %+v", last, want)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].Done < seen[i-1].Done {
			t.Errorf("progress went back: %+v then %+v", seen[i-1], seen[i])
		}
	}
}

var errBoomRemote = errors.New("never matched: remote errors are *pool.RemoteError")

// _TestPool test_map_no_failfast + test_traceback: errors carry the
// worker's message; a panic carries its stack; Map waits for everything.
func TestErrors(t *testing.T) {
	p := newPool(t, pool.Workers(2))
	got, err := fail.Map(bg, p, ints(100), pool.Chunksize(3))
	var re *pool.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("Map error = %v (%T), want *pool.RemoteError", err, err)
	}
	if re.Index != 3 || !strings.Contains(re.Message, "task 3: boom") || re.Task != "test.fail" || re.Pid == os.Getpid() {
		t.Errorf("RemoteError = %+v", re)
	}
	for i, v := range got {
		if i%10 != 3 && v != i {
			t.Errorf("result %d = %d: the successful tasks' results should be there", i, v)
		}
	}
	// Imap yields each error in place and goes on.
	var nerr, nok int
	for v, err := range fail.Imap(bg, p, slices.Values(ints(50)), pool.Chunksize(4)) {
		if err != nil {
			nerr++
			if !errors.As(err, &re) || re.Index%10 != 3 {
				t.Errorf("Imap error %v", err)
			}
		} else {
			if v%10 == 3 {
				t.Errorf("Imap: %d should have failed", v)
			}
			nok++
		}
	}
	if nerr != 5 || nok != 45 {
		t.Errorf("Imap: %d errors, %d results; want 5, 45", nerr, nok)
	}

	_, err = panicky.Apply(bg, p, "kaboom")
	if !errors.As(err, &re) || !re.Panicked || re.Message != "kaboom" || !strings.Contains(re.Stack, "panicInTask") {
		t.Errorf("panic: %v %+v", err, re)
	}
	// The pool is still fine.
	if v, err := square.Apply(bg, p, 9); err != nil || v != 81 {
		t.Errorf("Apply after errors = %d, %v", v, err)
	}
}

// _TestPoolWorkerErrors test_unpickleable_result: a result that cannot be
// encoded fails that task only, 20 times over, without losing workers.
func TestUnencodableResult(t *testing.T) {
	p := newPool(t, pool.Workers(2))
	pids := p.Pids()
	for range 20 {
		got, err := unencodable.Map(bg, p, ints(4), pool.Chunksize(4))
		if !errors.Is(err, pool.ErrEncode) {
			t.Fatalf("err = %v, want ErrEncode", err)
		}
		var re *pool.RemoteError
		if errors.As(err, &re); re.Index != 1 {
			t.Errorf("failed index %d, want 1", re.Index)
		}
		if got[0] != 0 || got[2] != 2 {
			t.Errorf("results %v: the encodable ones should be there", got)
		}
	}
	if diff := cmp.Diff(pids, p.Pids()); diff != "" {
		t.Errorf("workers changed (-before +after):\n%s", diff)
	}
}

// _TestPoolWorkerErrors test_async_error_callback, apply_async callbacks.
func TestApplyAsync(t *testing.T) {
	p := newPool(t, pool.Workers(2))
	var got int
	var gotErr error
	f := square.ApplyAsync(bg, p, 12, func(v int) { got = v }, func(err error) { gotErr = err })
	if v, err := f.Get(bg); v != 144 || err != nil {
		t.Fatalf("Get = %d, %v", v, err)
	}
	if got != 144 || gotErr != nil {
		t.Errorf("callbacks: %d, %v", got, gotErr)
	}
	f2 := fail.ApplyAsync(bg, p, 13, func(int) { t.Error("success callback on failure") }, func(err error) { gotErr = err })
	<-f2.Done()
	if !f2.Ready() || gotErr == nil || !strings.Contains(gotErr.Error(), "boom") {
		t.Errorf("error callback got %v", gotErr)
	}
	// Get with a context that ends first returns its error; the task goes on.
	f3 := sleep.Submit(bg, p, time.Hour)
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := f3.Get(ctx); err != context.Canceled {
		t.Errorf("Get(cancelled) = %v", err)
	}
}

func TestValidation(t *testing.T) {
	for _, tt := range []struct {
		name string
		opt  pool.Option
	}{
		{"workers0", pool.Workers(0)},
		{"workers-1", pool.Workers(-1)},
		{"maxtasks0", pool.MaxTasksPerChild(0)},
		{"maxtasks-1", pool.MaxTasksPerChild(-1)},
		{"retries-1", pool.Retries(-1)},
		{"timeout0", pool.TaskTimeout(0)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := pool.New(bg, tt.opt); err == nil || !strings.HasPrefix(err.Error(), "pool: ") {
				if p != nil {
					p.Terminate()
				}
				t.Errorf("New = %v", err)
			}
		})
	}
}

// Close, Join, ErrClosed, ErrRunning; close + join with lifetime-limited
// workers still completes every task (bpo-10332).
func TestLifecycle(t *testing.T) {
	mptest.CheckChildren(t)
	mptest.CheckFDs(t)
	p, err := pool.New(bg, pool.Workers(2), pool.MaxTasksPerChild(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Join(bg); err != pool.ErrRunning {
		t.Errorf("Join while running = %v", err)
	}
	fs := make([]*pool.Future[int], 10)
	for i := range fs {
		fs[i] = square.Submit(bg, p, i)
	}
	p.Close()
	p.Close()
	if _, err := square.Map(bg, p, ints(3)); err != pool.ErrClosed {
		t.Errorf("Map after Close = %v", err)
	}
	if _, err := square.Submit(bg, p, 1).Get(bg); err != pool.ErrClosed {
		t.Errorf("Submit after Close = %v", err)
	}
	for _, err := range square.Imap(bg, p, slices.Values(ints(3))) {
		if err != pool.ErrClosed {
			t.Errorf("Imap after Close = %v", err)
		}
	}
	if err := p.Join(bg); err != nil {
		t.Fatal(err)
	}
	for i, f := range fs {
		if v, err := f.Get(bg); v != i*i || err != nil {
			t.Errorf("task %d = %d, %v", i, v, err)
		}
	}
	p.Terminate() // a no-op now
}

// _TestPool test_terminate: Terminate with 10,000 pending tasks returns
// promptly; the pending tasks fail with ErrTerminated.
func TestTerminatePending(t *testing.T) {
	mptest.CheckChildren(t)
	p, err := pool.New(bg, pool.Workers(2), pool.KillGrace(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	fs := make([]*pool.Future[int], 10_000)
	for i := range fs {
		fs[i] = stubborn.Submit(bg, p, time.Hour)
	}
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	for i, f := range fs {
		if _, err := f.Get(bg); err != pool.ErrTerminated {
			t.Fatalf("task %d after Terminate: %v", i, err)
		}
	}
	if _, err := square.Map(bg, p, ints(2)); err != pool.ErrClosed {
		t.Errorf("Map on a terminated pool = %v", err)
	}
}

// _TestPoolWorkerLifetime test_pool_worker_lifetime: the workers are
// renewed after maxtasksperchild tasks.
func TestMaxTasksPerChild(t *testing.T) {
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(2), pool.MaxTasksPerChild(10))
	first := p.Pids()
	got, err := pid.Map(bg, p, ints(100), pool.Chunksize(1))
	if err != nil {
		t.Fatal(err)
	}
	count := map[int]int{}
	for _, pid := range got {
		count[pid]++
	}
	for pid, n := range count {
		if n > 10 {
			t.Errorf("worker %d ran %d tasks, more than maxtasksperchild", pid, n)
		}
	}
	if len(count) < 10 {
		t.Errorf("100 tasks ran in %d workers, want at least 10", len(count))
	}
	for _, pid := range first {
		if slices.Contains(p.Pids(), pid) {
			t.Errorf("first worker %d still there", pid)
		}
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A worker whose resident memory passes MaxMemory is retired after the
// chunk that made it grow.
func TestMaxMemory(t *testing.T) {
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(1), pool.MaxMemory(64<<20))
	a, err := grow.Apply(bg, p, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := grow.Apply(bg, p, 1)
	if a != b {
		t.Fatalf("a small worker was recycled (%d, %d)", a, b)
	}
	c, err := grow.Apply(bg, p, 100)
	if err != nil {
		t.Fatal(err)
	}
	if c != a {
		t.Fatalf("the task ran in %d, want %d", c, a)
	}
	d, err := grow.Apply(bg, p, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d == c {
		t.Errorf("worker %d passed the memory cap and was not recycled", c)
	}
}

// TestInitializers: the initializer runs once in each worker.
func TestInitializer(t *testing.T) {
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(2), pool.Initializer(initMark, "hello"))
	got, err := readInit.Map(bg, p, ints(50), pool.Chunksize(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range got {
		if !strings.HasPrefix(s, "hello:1:") {
			t.Errorf("worker state %q, want the initializer to have run once", s)
		}
	}
	if initRuns != 0 {
		t.Errorf("the initializer ran in the parent")
	}
}

// TestPoolNotLeakOnFailure: a worker that fails to start makes New stop
// the others, and nothing leaks. Here the initializer fails.
func TestStartFailureNoLeak(t *testing.T) {
	mptest.CheckChildren(t)
	mptest.CheckFDs(t)
	_, err := pool.New(bg, pool.Workers(3), pool.Initializer(initMark, "fail"))
	var se *pool.StartError
	var re *pool.RemoteError
	if !errors.As(err, &se) || !errors.As(err, &re) || !strings.Contains(re.Message, "initializer refuses") {
		t.Fatalf("New = %v", err)
	}
	// A starter that fails on its third start.
	st := &failingStarter{failAt: 3}
	_, err = pool.New(bg, pool.Workers(4), pool.Starter(st))
	if !errors.Is(err, errStarter) {
		t.Fatalf("New = %v, want the starter's error", err)
	}
}

var errStarter = errors.New("starter refuses")

// failingStarter is process.Spawn failing its failAt-th start, and every
// start from the failFrom-th on (when set).
type failingStarter struct {
	n        atomic.Int32
	failAt   int32
	failFrom int32
}

func (s *failingStarter) Name() string { return "failing" }
func (s *failingStarter) Start(ctx context.Context, req *starter.Request) (starter.Child, error) {
	if n := s.n.Add(1); n == s.failAt || (s.failFrom > 0 && n >= s.failFrom) {
		return nil, errStarter
	}
	return process.Spawn.Start(ctx, req)
}

// A worker that dies in a task: the task fails with ErrWorkerDied naming
// the signal (CPython hangs forever here, gh-66587); the pool goes on.
func TestWorkerDies(t *testing.T) {
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(2))
	_, err := suicide.Apply(bg, p, -1)
	var de *pool.WorkerDiedError
	if !errors.As(err, &de) || !errors.Is(err, pool.ErrWorkerDied) || de.Signal != syscall.SIGKILL || de.Code != -9 {
		t.Fatalf("Apply = %v", err)
	}
	// Only the task that killed its worker fails: the tasks the worker
	// held with it run again, each alone, which finds the culprit.
	in := []int{1, 2, -1, 4, 5, 6}
	got, err := suicide.Map(bg, p, in, pool.Chunksize(1))
	if !errors.As(err, &de) || de.Attempts != 1 || !slices.Equal(got, []int{1, 2, 0, 4, 5, 6}) {
		t.Errorf("Map = %v, %v", got, err)
	}
	// With retries, the culprit fails after killing a worker on each
	// attempt.
	p2 := newPool(t, pool.Workers(2), pool.Retries(2))
	got, err = suicide.Map(bg, p2, in, pool.Chunksize(1))
	if !errors.As(err, &de) || de.Attempts != 3 || !slices.Equal(got, []int{1, 2, 0, 4, 5, 6}) {
		t.Errorf("Map with retries: %v, %v", got, err)
	}
	if v, err := square.Apply(bg, p, 5); err != nil || v != 25 {
		t.Errorf("after deaths: %d, %v", v, err)
	}
}

// SIGKILL a random worker 20 times during a run of 10,000 tasks: every
// task ends, completed or with ErrWorkerDied (all complete with Retries),
// and nothing hangs.
func TestChaos(t *testing.T) {
	for _, retries := range []int{0, 25} {
		t.Run(map[int]string{0: "noretry", 25: "retries"}[retries], func(t *testing.T) {
			mptest.CheckChildren(t)
			p := newPool(t, pool.Workers(2), pool.Retries(retries))
			const n, kills = 10_000, 20
			var killed int
			progress := func(pr pool.Progress) {
				for killed < kills && pr.Done >= (killed+1)*n/(kills+5) {
					pids := p.Pids()
					if len(pids) > 0 && syscall.Kill(pids[rand.IntN(len(pids))], syscall.SIGKILL) == nil {
						killed++
					}
				}
			}
			in := make([]time.Duration, n)
			for i := range in {
				in[i] = time.Duration(i%3) * time.Microsecond
			}
			var ok, died int
			i := 0
			for v, err := range sleep.Imap(bg, p, slices.Values(in), pool.Chunksize(5), pool.OnProgress(progress)) {
				switch {
				case err == nil && v > 0:
					ok++
				case errors.Is(err, pool.ErrWorkerDied):
					died++
				default:
					t.Fatalf("task %d: %d, %v", i, v, err)
				}
				i++
			}
			if ok+died != n || killed != kills {
				t.Errorf("%d ok + %d died of %d tasks, %d kills", ok, died, n, killed)
			}
			if retries > 0 && died > 0 {
				t.Errorf("%d tasks died despite retries", died)
			}
			t.Logf("%d kills: %d ok, %d died", killed, ok, died)
		})
	}
}

// A task that runs past its deadline is killed with its worker; the pool
// goes on. A task that honours its context returns the deadline error
// itself and its worker lives.
//
// The pool stops a worker 100ms (TimeoutSlack) after its task's deadline:
// on a loaded machine a worker whose task returned at its deadline, or a
// quick task of the same chunk, can take longer than that to be heard,
// and was killed (seen under -race). Here the slack is 2s for the task
// that must be killed, and a minute where no task may be.
func TestTaskTimeout(t *testing.T) {
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(2), pool.TaskTimeout(200*time.Millisecond), pool.KillGrace(100*time.Millisecond),
		pool.TimeoutSlack(2*time.Second))
	pids := p.Pids()
	got, err := stubborn.Map(bg, p, []time.Duration{0, time.Hour, 0}, pool.Chunksize(3))
	var te *pool.TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Map = %v", err)
	}
	if got[0] == 0 || got[2] == 0 {
		t.Errorf("the other tasks of the chunk should complete: %v", got)
	}
	if !slices.Contains(pids, te.Pid) {
		t.Errorf("TimeoutError.Pid = %d, not one of the workers %v", te.Pid, pids)
	}
	if slices.Contains(p.Pids(), te.Pid) {
		t.Errorf("worker %d still in the pool", te.Pid)
	}
	if v, err := square.Apply(bg, p, 3); v != 9 || err != nil {
		t.Errorf("after the timeout: %d, %v", v, err)
	}
	p = newPool(t, pool.Workers(1), pool.TaskTimeout(200*time.Millisecond), pool.KillGrace(100*time.Millisecond),
		pool.TimeoutSlack(time.Minute))
	_, err = sleep.Apply(bg, p, time.Hour)
	var re *pool.RemoteError
	if !errors.As(err, &re) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cooperative timeout: %v", err)
	}
	if !slices.Contains(p.Pids(), re.Pid) {
		t.Errorf("the worker of a task that honoured its deadline was replaced")
	}
	if v, err := square.Apply(bg, p, 3); v != 9 || err != nil {
		t.Errorf("after timeouts: %d, %v", v, err)
	}
}

// termWatcher tells the test (through the gatekeeper's socket) its pid,
// then "TERM" when its worker gets SIGTERM, and goes on sleeping: it
// ignores its context and SIGTERM.
var termWatcher = pool.Register("test.termwatcher", func(ctx context.Context, sock string) (int, error) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	c, err := net.Dial("unix", sock)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := c.Write([]byte(strconv.Itoa(os.Getpid()) + "\n")); err != nil {
		return 0, err
	}
	<-sigs
	c.Write([]byte("TERM\n"))
	time.Sleep(time.Hour)
	return os.Getpid(), nil
})

// A task past its deadline that ignores its context and SIGTERM: its
// worker gets SIGTERM, then SIGKILL once KillGrace has passed, and the
// task fails with a *TimeoutError naming that worker.
func TestTaskTimeoutSignals(t *testing.T) {
	mptest.CheckChildren(t)
	g := newGatekeeper(t)
	log, logs := observedLogger()
	p := newPool(t, pool.Workers(1), pool.TaskTimeout(100*time.Millisecond), pool.KillGrace(300*time.Millisecond), pool.Logger(log))
	errc := make(chan error, 1)
	go func() {
		_, err := termWatcher.Apply(bg, p, g.sock)
		errc <- err
	}()
	a := g.next()
	defer a.conn.Close()
	line, err := bufio.NewReader(a.conn).ReadString('\n')
	if err != nil || line != "TERM\n" {
		t.Fatalf("the task's worker did not report SIGTERM: %q, %v", line, err)
	}
	termed := time.Now()
	err = <-errc
	killed := time.Since(termed)
	var te *pool.TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) || te.Pid != a.pid {
		t.Fatalf("Apply = %v (%+v), want a *TimeoutError naming worker %d", err, te, a.pid)
	}
	// The worker outlived SIGTERM and died of SIGKILL.
	if code := exitCodeLogged(logs, a.pid); code != -int(syscall.SIGKILL) {
		t.Errorf("worker %d exited with code %d, want -9 (SIGKILL after the kill grace)", a.pid, code)
	}
	t.Logf("SIGKILL %v after the task saw SIGTERM (kill grace 300ms)", killed)
	if v, err := square.Apply(bg, p, 3); v != 9 || err != nil {
		t.Errorf("after the timeout: %d, %v", v, err)
	}
}

// observedLogger is a debug logger whose entries the test can read.
func observedLogger() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core), logs
}

// exitCodeLogged returns the exit code the pool logged for worker pid, or
// 1 if it logged none.
func exitCodeLogged(logs *observer.ObservedLogs, pid int) int {
	for _, e := range logs.All() {
		m := e.ContextMap()
		if p, ok := m["pid"].(int64); ok && int(p) == pid {
			if c, ok := m["exitcode"].(int64); ok {
				return int(c)
			}
		}
	}
	return 1
}

// Cancelling a Map's context stops it at once and cancels its running
// tasks; a task that ignores cancellation is killed with its worker after
// the kill grace. The pool goes on.
func TestCancel(t *testing.T) {
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(2), pool.KillGrace(100*time.Millisecond))
	ctx, cancel := context.WithCancel(bg)
	var once sync.Once
	// Cancel once the first tasks are done and the rest are running.
	durs := []time.Duration{0, 0, time.Hour, time.Hour, time.Hour, time.Hour}
	_, err := sleep.Map(ctx, p, durs, pool.Chunksize(1), pool.OnProgress(func(pr pool.Progress) {
		if pr.Done >= 2 {
			once.Do(cancel)
		}
	}))
	if err != context.Canceled {
		t.Fatalf("Map = %v", err)
	}
	if v, err := square.Apply(bg, p, 4); v != 16 || err != nil {
		t.Errorf("after cancel: %d, %v", v, err)
	}

	// A task that ignores its cancellation: its call returns at once, and
	// its worker is killed after the kill grace and replaced.
	g := newGatekeeper(t)
	log, logs := observedLogger()
	p1 := newPool(t, pool.Workers(1), pool.KillGrace(100*time.Millisecond), pool.Logger(log))
	ctx2, cancel2 := context.WithCancel(bg)
	f := termWatcher.Submit(ctx2, p1, g.sock)
	a := g.next() // the task runs, in worker a.pid
	defer a.conn.Close()
	if pids := p1.Pids(); !slices.Equal(pids, []int{a.pid}) {
		t.Fatalf("workers %v, want the task's %d", pids, a.pid)
	}
	cancel2()
	if _, err := f.Get(bg); err != context.Canceled {
		t.Errorf("cancelled Submit = %v", err)
	}
	waitPids(t, p1, 1, []int{a.pid})
	killedLog := false
	for _, e := range logs.FilterMessage("killing a worker whose cancelled task does not return").All() {
		if pid, _ := e.ContextMap()["pid"].(int64); int(pid) == a.pid {
			killedLog = true
		}
	}
	if !killedLog {
		t.Errorf("worker %d was not killed for its cancelled task", a.pid)
	}
	if err := syscall.Kill(a.pid, 0); err != syscall.ESRCH {
		t.Errorf("worker %d still exists (kill 0: %v)", a.pid, err)
	}
	if v, err := square.Apply(bg, p1, 4); v != 16 || err != nil {
		t.Errorf("after the kill: %d, %v", v, err)
	}
}

// Imap over an endless input, stopped early: nothing leaks (goroutines
// are checked by mptest.Main, fds and children here).
func TestImapEndless(t *testing.T) {
	mptest.CheckChildren(t)
	mptest.CheckFDs(t)
	p, err := pool.New(bg, pool.Workers(2))
	if err != nil {
		t.Fatal(err)
	}
	var produced atomic.Int64
	endless := func(yield func(int) bool) {
		for i := 0; ; i++ {
			produced.Add(1)
			if !yield(i) {
				return
			}
		}
	}
	for _, ordered := range []bool{true, false} {
		seq := square.Imap
		if !ordered {
			seq = square.ImapUnordered
		}
		n := 0
		for v, err := range seq(bg, p, iter.Seq[int](endless), pool.Chunksize(3), pool.BufferSize(10)) {
			if err != nil {
				t.Fatal(err)
			}
			if ordered && v != n*n {
				t.Fatalf("item %d = %d", n, v)
			}
			n++
			if n == 1000 {
				break
			}
		}
		if got := produced.Load(); got > 1000+10*3 {
			t.Errorf("the input was read %d items ahead of 1000", got)
		}
		produced.Store(0)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestThreadPool(t *testing.T) {
	p, err := pool.NewThreadPool(bg, pool.Workers(3), pool.Initializer(initMark, "thread"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Terminate()
	got, err := square.Map(bg, p, ints(500), pool.Chunksize(7))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(squares(500), got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// ThreadPool does not wrap errors.
	_, err = fail.Apply(bg, p, 3)
	if !errors.Is(err, errBoom) {
		t.Errorf("ThreadPool error = %v, want errBoom itself", err)
	}
	var n int
	for v, err := range square.ImapUnordered(bg, p, slices.Values(ints(100))) {
		if err != nil {
			t.Fatal(err)
		}
		n += v
	}
	if n != 328350 {
		t.Errorf("sum = %d", n)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	initRuns, initValue = 0, ""
}

func TestWorkerEnv(t *testing.T) {
	p := newPool(t, pool.Workers(1))
	if n, err := gomaxprocs.Apply(bg, p, 0); n != 1 || err != nil {
		t.Errorf("default worker GOMAXPROCS = %d, %v; want 1", n, err)
	}
	p2 := newPool(t, pool.Workers(1), pool.WorkerEnv("GOMAXPROCS=3"))
	if n, err := gomaxprocs.Apply(bg, p2, 0); n != 3 || err != nil {
		t.Errorf("GOMAXPROCS = %d, %v; want 3", n, err)
	}
}

// _TestPool test_unpickleable_task (bpo-19425): an argument that cannot be
// encoded is an error of the call, with no hang; the pool goes on.
func TestUnencodableArgument(t *testing.T) {
	p := newPool(t, pool.Workers(1))
	if _, err := anyArg.Map(bg, p, []any{1, func() {}}); !errors.Is(err, pool.ErrEncode) {
		t.Errorf("Map = %v, want ErrEncode", err)
	}
	if _, err := anyArg.Apply(bg, p, make(chan int)); !errors.Is(err, pool.ErrEncode) {
		t.Errorf("Apply = %v, want ErrEncode", err)
	}
	if v, err := anyArg.Apply(bg, p, "fine"); v != 1 || err != nil {
		t.Errorf("Apply = %d, %v", v, err)
	}
}

// MaxWorkerAge retires old workers: tasks keep running, in new workers.
func TestMaxWorkerAge(t *testing.T) {
	mptest.CheckChildren(t)
	p := newPool(t, pool.Workers(1), pool.MaxWorkerAge(20*time.Millisecond))
	first, err := pid.Apply(bg, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, time.Minute)
	defer cancel()
	for {
		v, err := sleep.Apply(ctx, p, time.Millisecond)
		if err != nil {
			t.Fatalf("no new worker: %v", err)
		}
		if v != first {
			break
		}
	}
}

// TestLargeResults: results longer than the reader's receive buffer, mixed
// with short ones, each arrive whole and in their place.
func TestLargeResults(t *testing.T) {
	p := newPool(t, pool.Workers(2))
	in := []pool.Args2[string, int]{{A: "a", B: 3}, {A: "bc", B: 50_000}, {A: "d", B: 1}, {A: "xyz", B: 7_000}, {A: "e", B: 0}}
	for _, cs := range []int{1, 2, 5} {
		got, err := pool.Starmap(context.Background(), p, concat, in, pool.Chunksize(cs))
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range in {
			if want := strings.Repeat(a.A, a.B); got[i] != want {
				t.Fatalf("chunksize %d: result %d has %d bytes, want %d", cs, i, len(got[i]), len(want))
			}
		}
		r, err := concat.Apply(context.Background(), p, pool.Args2[string, int]{A: "q", B: 20_000})
		if err != nil || r != strings.Repeat("q", 20_000) {
			t.Fatalf("Apply: %d bytes, %v", len(r), err)
		}
	}
}
