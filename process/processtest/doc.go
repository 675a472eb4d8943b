// SPDX-License-Identifier: Apache-2.0

// Package processtest is the conformance suite of process.Starter: the
// behaviours a Process must have whatever start method made its child,
// as one function to call from a test, the way testing/fstest.TestFS
// checks an fs.FS and golang.org/x/net/nettest.TestConn a net.Conn.
//
// The process package runs it with process.Spawn, the forkserver module
// with its Starter; anyone who writes a Starter runs it too:
//
//	// Registered at package level, so that the test binary's children
//	// (which can start grandchildren) can make the same Starter.
//	var myMethod = processtest.RegisterMethod("mystarter", func() (process.Starter, error) {
//		return mystarter.New()
//	})
//
//	func TestMain(m *testing.M) { processtest.Main(m) }
//
//	func TestConformance(t *testing.T) { processtest.TestStarter(t, myMethod) }
//
// # What it checks
//
// Each subtest of TestStarter gets a new Starter from the Method, starts
// its children with it, closes it at its end (when the Starter is an
// io.Closer) and fails if a file descriptor or a child process outlives
// it. The subtests cover, with their names:
//
//   - ExitCodes, ErrorAndPanic, TerminateGrace: Python's exit codes (0,
//     1 on error or panic, n from process.Exit, minus the signal number
//     after Terminate, Kill, Interrupt or Signal) and the *ExitError
//     carrying the child's error text, type and panic stack.
//   - JoinDeadline, State, Lifecycle, ConcurrentJoin, Sentinel, JoinEINTR:
//     Join with a context that ends first and with one already done
//     (never blocking), Alive/ExitCode/Pid/String before, during and
//     after the child's life, the errors of calls in the wrong state,
//     many goroutines joining at once, the sentinel with ipc.Wait, a
//     signal arriving while Join waits.
//   - BadArgs, StartupErrors, ArgumentEncodings, PassConn, LargeArgument,
//     ManyHandles: arguments refused in the parent, a child that cannot
//     start saying why (the bootstrap message mangled on its way to the
//     Starter), plain values of each encoding, Conns and pipe ends talked
//     over, a 16 MiB argument, 126 Conns (252 files) in one child.
//   - CurrentAndParent, Env, WorkingDir, Stdio, ChildFDs, FDsConstant,
//     InheritedHandles: what the child sees (Current, Parent, the log
//     level of the parent's Process.Logger, Process.Env over the parent's
//     environment, the parent's working directory at Start, redirected stdio, stdin /dev/null, no descriptor it
//     was not given, even one opened without close-on-exec), the parent's
//     descriptor table unchanged by starts, handles for the whole tree.
//   - RecursiveChildren, ManyTerminated, ActiveChildrenAndShutdown,
//     DaemonNoChildren, ParentKilled, ProgramKilled: children starting
//     grandchildren with the same method, 100 children terminated
//     together, ActiveChildren and Shutdown, a daemon refused children,
//     a SIGKILLed parent (a child, or a whole program run as an
//     internal/mptest helper) whose daemonic child dies and whose other
//     child sees it go.
//
// The suite does not check what is specific to one start method (how
// Spawn prepares its exec, a forkserver's warm processes); those tests
// stay with the method.
//
// # Starters in children
//
// Some subtests need the Starter under test in another process: a child
// that starts grandchildren, a helper program that is then killed. A
// Starter cannot travel to a child, so the suite knows a method by a
// name: RegisterMethod, called at package level like process.Register,
// registers a function that makes a Starter, in the test process and in
// every child of the same binary alike; the suite passes the name to the
// child, which makes its own Starter with it (and closes it before it
// returns). Spawn is registered by this package.
//
// Importing processtest registers its functions (named "processtest.*"),
// a helper program ("processtest.program") and an inherited handle
// (key "processtest.inherited", empty except during one subtest) in the
// test binary; the binary's TestMain must be Main (process.Init, then
// the helper programs, then the tests).
//
// # Starters that prepare processes ahead of time
//
// A Starter whose processes are started before the request (the
// forkserver's warm processes) may implement Warmer. The suite then calls
// Warm where it matters which state of the parent those processes saw:
// before the parent changes its working directory (WorkingDir) or opens
// descriptors its children must not inherit (ChildFDs), so that the child
// checked comes from a process prepared before the change; and in the
// helper program of ProgramKilled, whose prepared processes must die with
// it.
//
// # Concurrency and cost
//
// TestStarter's subtests run one after the other and must not run in
// parallel with other tests of the binary that start processes: they
// count the process's children and open descriptors, and
// ActiveChildrenAndShutdown calls process.Shutdown. With Spawn the whole
// suite takes a few seconds; it starts a few hundred children.
package processtest
