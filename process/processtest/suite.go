// SPDX-License-Identifier: Apache-2.0

package processtest

import (
	"context"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
)

// TestStarter runs the process package's behavioural tests, each as a
// subtest of t, with every child started by a Starter of m. A subtest
// gets a Starter of its own from m.New, closes it at its end, and fails
// when it leaves a file descriptor open or a child process behind.
//
// The subtests are not parallel (they check for leaks and count the
// children of the process); do not call t.Parallel around TestStarter.
// The test binary's TestMain must be Main (or call process.Init, then
// the multiproc repository's mptest.Main); importing this package
// registers the functions and the helper program the suite runs in
// children.
func TestStarter(t *testing.T, m *Method) {
	if m == nil {
		t.Fatal("processtest: TestStarter with a nil Method")
	}
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) {
			mptest.CheckFDs(t)
			mptest.CheckChildren(t)
			e := &env{m: m, s: starterT(t, m)}
			tc.run(t, e)
		})
	}
}

// Main is a TestMain for a test binary that runs the suite:
//
//	func TestMain(m *testing.M) { processtest.Main(m) }
//
// It calls process.Init (in a child: runs the child's function and
// exits), runs the suite's helper program when the binary was started as
// one (and exits), and otherwise runs the tests, then fails if they
// leaked a goroutine. It is what process.Init followed by the multiproc
// repository's mptest.Main does, for binaries outside that repository.
func Main(m *testing.M) {
	process.Init()
	mptest.Main(m)
}

// The subtests, in the order they run.
var suite = []struct {
	name string
	run  func(*testing.T, *env)
}{
	// exit codes, errors, signals, waiting (exit.go)
	{"ExitCodes", testExitCodes},
	{"ErrorAndPanic", testErrorAndPanic},
	{"TerminateGrace", testTerminateGrace},
	{"JoinDeadline", testJoinDeadline},
	{"State", testState},
	{"Lifecycle", testLifecycle},
	{"ConcurrentJoin", testConcurrentJoin},
	{"Sentinel", testSentinel},
	{"JoinEINTR", testJoinEINTR},
	// arguments (args.go)
	{"BadArgs", testBadArgs},
	{"StartupErrors", testStartupErrors},
	{"ArgumentEncodings", testArgumentEncodings},
	{"PassConn", testPassConn},
	{"LargeArgument", testLargeArgument},
	{"ManyHandles", testManyHandles},
	// what a child sees (child.go)
	{"CurrentAndParent", testCurrentAndParent},
	{"Env", testEnv},
	{"WorkingDir", testWorkingDir},
	{"Stdio", testStdio},
	{"ChildFDs", testChildFDs},
	{"FDsConstant", testFDsConstant},
	{"InheritedHandles", testInheritedHandles},
	// trees of processes (tree.go)
	{"RecursiveChildren", testRecursiveChildren},
	{"ManyTerminated", testManyTerminated},
	{"ActiveChildrenAndShutdown", testActiveChildrenAndShutdown},
	{"DaemonNoChildren", testDaemonNoChildren},
	{"ParentKilled", testParentKilled},
	{"ProgramKilled", testProgramKilled},
}

// env is what a subtest works with: the method and its Starter.
type env struct {
	m *Method
	s process.Starter
}

// start starts p with the Starter under test; t's cleanup kills it if
// it still runs, reaps it and closes it.
func (e *env) start(t *testing.T, p *process.Process) *process.Process {
	t.Helper()
	return startWith(t, e.s, p)
}

// startWith is env.start with another Starter of the method.
func startWith(t *testing.T, s process.Starter, p *process.Process) *process.Process {
	t.Helper()
	p.Starter = s
	if err := p.Start(ctxT(t)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if p.Alive() {
			p.Kill()
		}
		p.Join(context.Background())
		p.Close()
	})
	if got := p.StartMethodName(); got != s.Name() {
		t.Errorf("StartMethodName = %q, want the Starter's name %q", got, s.Name())
	}
	return p
}

// A Warmer is a Starter that prepares processes ahead of time and can be
// asked to have them all ready (the forkserver's Warm). The suite calls
// Warm where it matters which state of the parent such processes saw.
type Warmer interface {
	Warm(ctx context.Context) error
}

// warm makes the Starter's prepared processes ready, if it has any: a
// child started next was prepared before what the caller does now.
func (e *env) warm(t *testing.T) {
	t.Helper()
	if w, ok := e.s.(Warmer); ok {
		if err := w.Warm(ctxT(t)); err != nil {
			t.Fatalf("Warm: %v", err)
		}
	}
}

// ctxT bounds a blocking call of the test: a hang fails the test instead
// of the whole binary.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func pipe(t *testing.T) (*ipc.Conn, *ipc.Conn) {
	t.Helper()
	a, b, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// recv receives the child's message on c.
func recv(t *testing.T, c *ipc.Conn, v any) {
	t.Helper()
	if err := c.Recv(ctxT(t), v); err != nil {
		t.Fatalf("no message from the child: %v", err)
	}
}

func exitCode(t *testing.T, p *process.Process) int {
	t.Helper()
	code, ok := p.ExitCode()
	if !ok {
		t.Fatalf("%v: no exit code", p)
	}
	return code
}
