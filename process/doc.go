// SPDX-License-Identifier: Apache-2.0

// Package process runs Go functions in child processes, with the
// semantics of Python's multiprocessing.Process and fewer ways to go
// wrong.
//
// # Register, then Init
//
// Go cannot fork (the runtime is always multithreaded), so every child is
// a re-execution of the running binary. The functions a child may run are
// registered at package level, so that parent and child (the same binary)
// know them under the same names, and main calls Init before anything
// else:
//
//	var hello = process.Register1("hello", func(ctx context.Context, who string) error {
//		fmt.Println("hello,", who)
//		return nil
//	})
//
//	func main() {
//		process.Init() // in a child: runs the function and exits
//		ctx := context.Background()
//		defer process.Shutdown(ctx)
//		p := hello.Process("world") // the argument's type is checked by the compiler
//		if err := p.Start(ctx); err != nil {
//			log.Fatal(err)
//		}
//		err := p.Join(ctx) // nil, or an *ExitError
//		...
//	}
//
// Register1 takes a function of one argument, typed; Register takes a
// function of any number of arguments (handles such as an *ipc.Conn among
// them), checked against the registered signature at Start:
//
//	var square = process.Register("square", func(ctx context.Context, n int, out *ipc.Conn) error {
//		defer out.Close()
//		return out.Send(ctx, n*n)
//	})
//
// In the parent Init returns at once (one environment lookup). In a child
// (marked by the MULTIPROC_CHILD environment variable) it reads a protobuf
// bootstrap message from an inherited memfd, rebuilds the arguments, runs
// the function and exits; it never returns. The cost of a start is
// therefore that of exec'ing the binary and running its package
// initialisation, plus a fraction of a millisecond: keep heavy work out of
// init functions and package-level variables. Tests that start children
// call Init first in TestMain.
//
// A function takes a context.Context and any number of arguments, and
// returns an error or nothing. An argument is either a handle (a *T whose
// type has MultiprocAttach, such as *ipc.Conn: its files travel to the
// child as inherited descriptors and the child gets its own *T rebuilt from
// them) or a plain value encoded by ipc.DefaultCodec ([]byte as is,
// protobuf messages, gob for the rest). Start checks every argument against
// the registered signature and encodes it, so a wrong or unencodable
// argument is an error in the parent, not a mystery in the child.
//
// # Lifecycle
//
// A Process is shaped like os/exec.Cmd: set Func and Args (and optionally
// Name, Daemon, Env, Stdin/Stdout/Stderr, Starter, Logger, TermGrace),
// then Start once and Wait once, or Join (any number of times, from any
// goroutine, with a context as timeout) and Close. Join with a context that
// is already done never blocks: it only checks, like Python's join(0).
// Alive, ExitCode and ActiveChildren reap a child that has exited.
//
// The child's stdin is /dev/null unless Stdin says otherwise; stdout and
// stderr are the parent's unless redirected. A child inherits exactly the
// descriptors it was given: everything multiproc opens is close-on-exec,
// and a child closes at start-up any descriptor it inherited by accident
// (one the parent had opened without close-on-exec). It recognises those by
// their missing close-on-exec flag, which every descriptor the Go runtime
// and the standard library open has; a C library linked with cgo that opens
// a descriptor without close-on-exec in a constructor would lose it.
//
// # Exit codes and errors
//
// ExitCode follows Python: 0 when the function returns nil, 1 when it
// returns an error or panics, the code given to Exit (return
// process.Exit(3)), and minus the signal number when a signal killed the
// child: -15 after Terminate, -9 after Kill. Wait and Join return nil for
// code 0 and an *ExitError otherwise, carrying the child's error text and
// Go type, the panic's stack, the signal, and whether the child failed
// before running its function at all (a bad bootstrap message, a function
// its binary does not register, an argument it could not rebuild, a main
// that never called Init): errors.Is(err, ErrStartup), ErrPanicked,
// ErrSignaled.
//
// Terminate sends SIGTERM. The child's function sees its context
// cancelled and has TermGrace (one second by default) to return; the child
// then dies of SIGTERM, so the exit code is -15 as in Python, unless the
// function returned Exit(code) to report how it cleaned up. A function that
// ignores its context is killed by SIGTERM when the grace period ends.
// Kill sends SIGKILL. Both address the child through a pidfd, so a
// recycled pid can never be signalled by mistake, and signalling a child
// that already exited is not an error. Sentinel returns the pidfd as an
// ipc.Waitable, so ipc.Wait waits for children and connections together.
//
// # Daemons, parents and shutdown
//
// Each child holds one end of a unix socket whose other end only its
// parent holds: the child reports its status on it, and reads EOF from it
// when the parent is gone, however the parent died (SIGKILL included). A
// daemonic child (Daemon: true) then behaves as if terminated: its context
// is cancelled and it dies after its grace period. PR_SET_PDEATHSIG
// (SIGTERM) is set as a second line of defence. The kernel sends it when
// the thread that forked the child ends, so daemons are forked from a fresh
// goroutine (never a thread locked with runtime.LockOSThread); a thread the
// runtime later hands to a locked goroutine that exits without unlocking
// would still send it. A non-daemonic child
// outlives its parent and can watch Parent().Alive() or Parent().Done().
// Parent also carries the parent's pid and start time (/proc/<pid>/stat
// field 22), which pid reuse cannot fool.
//
// Go has no atexit: call Shutdown before main returns (it is what Python
// does at exit: terminate the daemonic children, then wait for all of
// them). A child does the same for its own children when its function
// returns. As in Python, a daemonic process may not start children.
//
// # Start methods
//
// Process.Starter chooses how the child is started; Spawn (exec of
// /proc/self/exe) is the default, SetDefaultStarter changes it for the
// whole program (Python's set_start_method), and the forkserver module
// provides warm, pre-started processes. A Starter receives a fully
// prepared request (bootstrap bytes, the table of files, environment,
// stdio) and returns a child to wait on and signal; what a Starter's
// author needs beyond that lives in package process/starter. Whatever the
// Starter, the child runs in the
// parent's working directory of the time of Start: a child that Spawn
// did not fork then receives it in its bootstrap message (as a directory
// descriptor, like CPython's preparation data "dir") and changes to it
// before running anything. StartMethod("fork") returns ErrNoFork,
// which explains why there is no fork in Go and what to use instead.
// Package processtest checks a Starter against all of this.
//
// # Handles for the whole tree
//
// A module above this one (the resource tracker) can give every child of
// the tree a handle: starter.RegisterInherited(key, fn) at package
// initialisation runs fn at each Start and passes its files and descriptor
// to the child, where starter.Inherited(key) returns them. The same
// registration runs in the child, so grandchildren get it too.
//
// # Current process, CPUs, authkey, logging
//
// Current describes this process (name, pid, identity, daemon flag, start
// method, the tree's 32-byte authkey). CPUCount is the number of CPUs
// this process may use: its affinity mask, lowered by cgroup CPU quotas
// (v1 and v2). HostCPUCount is the number the machine has online
// (Python's os.cpu_count), which neither lowers.
//
// Diagnostics go to Process.Logger (a *zap.Logger, no-op by default); the
// package never prints, except a child's last-resort message on its
// stderr when it cannot even reach its parent. A child whose parent set a
// Logger gets Current().Logger at the parent's level, writing to its
// stderr.
//
// # Concurrency
//
// Register is meant for package initialisation
// but are safe at any time. A Process's fields must not change after
// Start; its methods are safe for concurrent use. Current, Parent,
// ActiveChildren, Shutdown, CPUCount and HostCPUCount are safe for
// concurrent use.
//
// # Systems
//
// Linux only (pidfd, memfd, /proc); Linux 5.3 or later. On other systems
// the package does not build yet, like the ipc package it depends on.
package process
