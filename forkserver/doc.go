// SPDX-License-Identifier: Apache-2.0

// Package forkserver is the forkserver start method of the process
// package: a process.Starter whose children are warm processes, started
// ahead of time, so that starting a child costs a message instead of an
// exec of the binary.
//
//	fs, err := forkserver.New(forkserver.Size(2))
//	...
//	defer fs.Close()
//	p := worker.Process(args...)
//	p.Starter = fs // everything else as with process.Spawn
//	err = p.Start(ctx)
//
// A pool takes any process.Starter the same way, so that replacing a
// worker (after maxtasksperchild, a memory cap or a crash) does not wait
// for an exec. To make it the start method of the whole program (every
// Process, pool and manager not given a Starter), as Python's
// set_start_method("forkserver") does:
//
//	process.SetDefaultStarter(fs)
//
// Costs, measured on the project's 2-CPU VM (docs/performance.md): a
// start+join of an empty function 0.9-1.2 ms against about 3 ms with
// Spawn; a pool worker killed and replaced, task included, 1.2-1.3 ms
// against 3.0-3.2 ms; a Pool(2) made, used and joined 2.0 ms against
// 4.3 ms. A warm process must still exit and be reaped like any other,
// which on that VM alone costs 0.4-0.9 ms (BenchmarkFloorWakeExit).
//
// # Warm processes
//
// Go cannot fork: the runtime is multithreaded. A warm process is
// therefore what a spawned child is, a re-execution of the running binary
// (/proc/self/exe), started before it is needed. It runs the runtime's
// and every package's initialisation, then main calls process.Init
// (which the program does first anyway), and there, through a hook this
// package registers at initialisation (starter.RegisterInitHook), it
// does what a child's start needs that does not depend on the request
// (starter.PrepareChild: the SIGTERM watcher; the request's decoder), sends
// a Ready frame, and blocks for its request in one recvmsg(2) on its own
// thread. The program makes the next child's status socketpair ahead too
// (starter.StatusSockets). No user code beyond
// package initialisation runs before the request: exactly what runs in a
// spawned child before its function.
//
// Start takes a ready warm process and sends it one frame on its control
// socket (a private socketpair: no name, nothing to authenticate): a
// multiproc.forkserver.v1.Request carrying the bootstrap message the
// process package prepared, with the request's stdin, stdout, stderr and
// inherited-file table passed by SCM_RIGHTS (253 files a frame; more go in
// following frames). The warm process puts the stdio files on fds 0, 1 and
// 2 (blocking, as Spawn gives them); those it was started with, /dev/null
// and the program's stdout and stderr, are not passed when they are what
// the child is to have (the same files, on the same objects: a program
// that later dup2s another file onto its fd 1 gives its children the new
// one). It adopts the program's current
// environment when it changed since the warm process started, sets the
// death signal for a daemon, and calls starter.RunChild: from there on it
// is a child like any other. Start returns as soon as the frame is sent;
// a background goroutine starts a replacement RefillDelay later (2 ms by
// default, so that the exec of the replacement does not compete for the
// CPUs with a short child), and the set is kept at Size (DefaultSize, 2).
// Start waits for a warm process only when none is ready, and then asks
// for one at once; Warm fills the set ahead of time.
//
// # Why the program keeps the warm processes itself
//
// CPython's forkserver is a server process that forks a child per
// request; the children are the server's, so the server must write each
// child's pid and exit code back to the program, which then waits on a
// pipe rather than on the child. Here the program starts its warm
// processes directly, and so:
//
//   - each warm process is the program's own child, started with a pidfd
//     (clone's CLONE_PIDFD) that starter.ChildFromPidfd turns into the
//     same Child Spawn returns: Join, Wait, Terminate, Kill, Sentinel,
//     ExitCode, signals as negative codes, all exact, with no pid-reuse
//     race and no status relayed by a third process;
//   - the child's parent is the program: Parent() (pid, start time,
//     liveness through the status socket), getppid and the daemon's death
//     signal all refer to the real parent;
//   - there is no server to crash, hang or be restarted: "the forkserver
//     died" can only mean a warm process died (killed by someone). Start
//     then notices it (the hand-over's send fails; Warm reaps it through
//     its pidfd) and takes another, making one if needed, so the next
//     start succeeds; the dead one is replaced in the background.
//
// The cost is that warm processes are made by exec'ing the binary (Go has
// no cheap fork to make them from a server). That is off the critical
// path while a warm process is ready, but it bounds the sustained rate:
// starting children back to back faster than the binary can be exec'd
// empties the set, and each start then waits for an exec, as with Spawn.
// Size sets how many starts in a burst are fast.
//
// # Lifetimes
//
// A warm process dies with the program however the program ends: it reads
// EOF on its control socket (whose other end only the program holds) and
// exits without running anything. Warm processes have no death signal:
// one that has received its request but not yet acted on it must survive
// a program that dies at that moment, when the child is not a daemon. (A
// warm process still in package initialisation when the program dies
// ends when it reaches process.Init and finds the socket closed.)
// Once handed a request, a warm process's life is the child's: a
// non-daemonic child may outlive its parent, a daemonic one ends with it
// (lifeline plus PR_SET_PDEATHSIG SIGTERM, as with Spawn). Close kills
// the warm processes not yet used and ends the refill goroutine; children
// already started belong to their Processes. After Close, Start and Warm
// return ErrClosed.
//
// # What differs from Spawn
//
//   - The child is not exec'd for its request: its environment is the
//     program's of the time of Start (applied with os.Setenv, so a value
//     that package initialisation read is the value at the warm process's
//     start), and os.Args is the program's argv[0], as with Spawn.
//   - What a process takes from its parent when it is forked, the child
//     takes from the program of the time its warm process was started:
//     umask, resource limits, ignored signals, CPU affinity, scheduling
//     priority, cgroup, session. A program that changes one of these
//     between two starts should Close its Starter and make a new one. The
//     working directory is the exception: the process package gives every
//     child the program's directory of the time of Start.
//   - Package initialisation ran before the request, possibly long before:
//     init functions that read the time, the environment or files see
//     those of the warm process's start, and so does the runtime
//     (GOMAXPROCS, GOGC, GODEBUG are read when a process starts).
//   - A program whose main does not call process.Init first would run
//     main in each warm process; Start in such a process returns
//     ErrNoInit, and a warm process that exits before it is ready makes
//     Start fail with an error that says so.
//   - Starting a process costs the program a warm process that it made
//     ahead of time: Size idle processes, each a few MiB of resident
//     memory.
//
// # Concurrency
//
// A Starter is safe for concurrent use: Processes and pools may share
// one. Start, Warm and Close may be called from any goroutine; Close
// waits for the refill goroutine to end.
//
// # Systems
//
// Linux only, like the process package (pidfd, SCM_RIGHTS, /proc/self/exe):
// Linux 5.3 or later.
package forkserver
