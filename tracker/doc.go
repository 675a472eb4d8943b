// SPDX-License-Identifier: Apache-2.0

// Package tracker is multiproc's resource tracker: a daemon process that
// cleans up the named resources (POSIX shared memory segments, and any
// type a module adds) that a process tree created and did not remove,
// once every process of the tree is gone, however they ended (SIGKILL
// included). It is CPython's resource_tracker, without its known defects.
//
// # How it works
//
// The first process of a tree that registers a resource starts the
// tracker: a re-execution of the running binary, turned into the tracker
// by process.Init (an init hook), so main must call process.Init first, as
// for any multiproc child. The tracker reads a pipe whose write end every
// process of the tree holds: the starter keeps it, and every child started
// through the process package inherits a duplicate
// (starter.RegisterInherited), also a child that never registers
// anything, so that a grandchild's resources are covered too. A child
// that registers a resource uses its inherited connection instead of
// starting a tracker of its own. A child started before the tree had a
// tracker inherits none: if it registers, it starts a tracker for itself
// and its own children, which cleans up when that subtree is gone, even
// if its parent still uses the resource by name. CPython avoids this by
// starting the tracker at the first spawn; here a program whose children
// create named resources that must outlive them calls EnsureRunning
// before starting them. When the last write end is closed (every
// process of the tree has exited or been killed), the tracker reads EOF,
// cleans up what is still registered, logs a warning naming each leaked
// resource, and exits with CPython 3.13's codes (0 nothing leaked, 1
// leaks cleaned up, 2 a cleanup failed, 3 a malformed message was seen).
//
// The tracker outlives the program that started it: it runs in its own
// session (so a terminal's Ctrl-C or hang-up does not reach it), has no
// parent-death signal, is not a process.Process (process.Shutdown does not
// wait for it) and ignores SIGINT and SIGTERM. Its standard error is its
// starter's, unless that is a pipe or a socket (which a parent of the tree
// may be reading until every writer is gone): then /dev/null. Its log
// level is warn, or MULTIPROC_TRACKER_LOG (debug, info, warn, error). It
// runs with GOMAXPROCS=1 and closes any descriptor it inherited by
// accident.
//
// If the tracker is killed, the next Register of a process notices (EPIPE
// on the pipe), starts a new tracker and logs a warning through the
// client's logger (SetLogger) that the resources registered with the dead
// one may leak. Each process that held a connection to the dead tracker
// starts its own replacement on its next Register, as in CPython.
//
// # Ownership (gh-82300)
//
// Only the creator of a resource registers it; attaching to it never
// does, so a process that only attached never causes an unlink (CPython
// before 3.13 unlinked a segment when any attaching process exited).
// Unregister, called after a normal removal, may come from any process of
// the tree. The shm package registers each named segment it creates
// (unless created with shm.Untracked) and unregisters it on Unlink.
//
// # The pipe protocol
//
// Each message is written with one write(2) of at most PIPE_BUF (4096)
// bytes, which the kernel never interleaves with another process's
// write, so Register costs one system call and cannot be lost once it
// returns (it is synchronous, not a buffered, asynchronous send). After a
// read that found messages the tracker pauses a millisecond before
// reading again, so that a burst (a loop creating segments) gathers in
// the pipe and the writers' writes wake no process; idle, it blocks in
// poll. A
// message carries its lengths, so a name may hold any byte but NUL:
//
//	0x00 | op ('R' register, 'U' unregister, 'P' probe) | len(type) u8 |
//	len(name) u16 BE | sender pid u32 BE | type | name
//
// Types are 1 to MaxTypeLen bytes of [a-z0-9_]; names 1 to MaxNameLen
// bytes. The tracker validates every message, logs and skips a malformed
// one and never stops for it. For trees that mix in CPython processes
// handed the tracker's fd, it also accepts CPython's line forms:
// "REGISTER:<name>:<rtype>\n" (split at the first and the last ':', so a
// name may hold ':', unlike CPython's own parser, gh-98896) and the newer
// JSON line with a base64 name; CPython's "shared_memory" and
// "semaphore" types are known, and their names are kept without the
// leading "/" CPython gives them, so a segment registered by a CPython
// process is unregistered by a Go one and the other way round.
//
// # Types
//
// RegisterType adds a resource type and its cleanup function; call it at
// package initialisation, so that the tracker (the same binary) knows it.
// SharedMemory and Semaphore are built in.
//
// # Listing
//
// A tracker also listens on the abstract unix socket
// "@multiproc-tracker-<pid>" and answers a list request (the byte 'L',
// from a process of the same user or root, checked with SO_PEERCRED) with
// 'K' and its registry as a sequence of register messages, after
// reading everything already written to its pipe, so a List sees every
// Register that returned before it. List asks this process's tracker;
// ListAll finds every tracker of this network namespace through
// /proc/net/unix.
//
// # Concurrency
//
// Register, Unregister, EnsureRunning, Pid, List, ListAll and SetLogger
// are safe for concurrent use. Registering and unregistering the same
// name from two processes at once is ordered as the tracker reads them.
//
// # Systems
//
// Linux only, like the process package.
package tracker
