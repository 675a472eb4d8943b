// SPDX-License-Identifier: Apache-2.0

// Package queue provides Queue, JoinableQueue and SimpleQueue: FIFO
// queues of typed items shared by any number of producer and consumer
// processes, with the semantics of Python's multiprocessing queues and
// none of their feeder-thread traps.
//
// # Use
//
// Create a queue in one process and pass it to children as an argument
// of a registered function (package process calls MultiprocHandle and
// MultiprocAttach); every handle, in every process, reaches the same
// queue:
//
//	var worker = process.Register("worker", func(ctx context.Context, q *queue.Queue[Job]) error {
//		defer q.Close()
//		for {
//			job, err := q.Get(ctx)
//			...
//		}
//	})
//
//	q, err := queue.New[Job](queue.MaxSize(100))
//	p := worker.Process(q)
//	p.Start(ctx)
//	q.Put(ctx, Job{...})
//
// Items are encoded like ipc's DefaultCodec: a proto.Message in protobuf
// wire format, a []byte as is, anything else as a gob stream; numbers,
// bools and strings take a fast path with the same results (see
// codec.go). Put and Get take a context: its deadline is Python's
// timeout, and ending it makes Put fail with an error matching ErrFull
// (Get: ErrEmpty) and the context's error. TryPut and TryGet never wait
// for the queue's state (Python's put_nowait and get_nowait). Len is
// exact (Python's qsize is approximate, and missing on macOS), as are
// Empty and Full. JoinableQueue adds TaskDone and Join; SimpleQueue is
// the unbounded Put/Get/Empty/Close subset.
//
// # Guarantees
//
//   - Put is synchronous: when it returns nil, the item is in shared
//     memory. There is no feeder goroutine; a process that put items may
//     exit (or be killed) at once, and the items stay queued. Nothing
//     makes a process wait for a queue at exit.
//   - Each item is delivered to exactly one Get (at most one when a
//     consumer dies inside Get, see below), whole: items of any size up
//     to MaxItemSize are never interleaved or torn. Items come out in the
//     order their Puts completed; the Put of an item happens before the
//     Get that returns it (everything the producer wrote before Put is
//     visible to the consumer after Get).
//   - Memory is bounded: MaxSize bounds the count of items (0: none);
//     MaxBytes (default 1 GiB of address space, used as memory only as
//     far as the queue fills) bounds the encoded bytes. Put waits while
//     either bound is reached.
//   - Close releases this process's handle: later calls return ErrClosed,
//     calls waiting in other goroutines return ErrClosed. The queue lives
//     until the last handle in the last process is closed or its process
//     exits; it is an anonymous memfd and cannot leak.
//
// # Processes that die
//
// A producer killed inside Put either put its item entirely or not at all:
// consumers never see a partial item. A consumer killed inside Get either
// took its item (the item is lost with the process) or not (the item stays
// for the other consumers); no item is delivered twice. An item that Get
// has returned belongs to the consumer: if the consumer dies before it is
// processed, it is lost, and for a JoinableQueue it stays unfinished, so
// Join waits until its context ends (bound Join with a context when
// consumers may die). The death of a process never wedges the others: the
// locks notice a dead holder and the next process to take the lock
// repairs the queue (and logs it through Logger); a Put that had
// passed its commit point when its process died completes then, and
// waiters that no other process helps check for such a death every
// quarter of a second. A process that dies while waiting leaves at most
// one needless wake-up behind. See DESIGN.md for the protocol.
//
// # Design
//
// A queue is one anonymous shared segment (package shm): a 4 KiB header
// and a ring of frames (an 8-byte header: length and encoding, then the
// payload, padded to 8 bytes). Producers append under one robust lock,
// consumers take under another (package syncprim; a holder that dies is
// reported as ErrOwnerDead to the next one), so that one producer and one
// consumer never contend. Each side commits through a small journal:
// the absolute new values of its counters are written and marked valid,
// then published, then the mark is cleared; the next holder after a death
// replays a valid journal, so a commit is all or nothing. Items ever put
// and taken are two shared counters: their difference is the exact
// length.
//
// Items of any size travel through the ring, copied once in and once out
// of shared memory (no trip through the kernel). The ring starts at
// 256 KiB, doubles when an item does not fit (moving at most the live
// bytes once), and shrinks back, returning its pages to the kernel, when
// the queue drains (at least a second after it last grew, so that quick
// fill-and-drain cycles do not fault the pages in again each time). The
// whole MaxBytes is reserved as address space, so that growing never
// remaps. A Put of a large item (64 KiB or more) whose ring already
// holds four such items waits up to 5 ms for a Get to make room before it
// grows the ring: a stream of large items then reuses a small ring that
// is already in memory (and in the cache) instead of faulting in fresh
// pages as far as the producer's lead goes. The wait is bounded, so a
// producer that no consumer follows still gets every item in (paying it
// once per doubling); TryPut never waits.
//
// Large []byte items: Get returns each item in new memory of its own. A
// consumer of a stream of large items should use GetBytes with one
// reused buffer, which copies each item once, out of the ring into that
// buffer, and allocates nothing (with Get, the allocations of a stream of
// 1 MiB items make the garbage collector run every few items, which cost
// four times the copy; docs/performance.md).
//
// Waiting uses futex words in the segment, each with a "sleeper" bit and
// a count of sleepers: a Put costs no system call unless a consumer
// sleeps in the kernel. A consumer that finds
// the queue empty first polls briefly (adaptively, never with one CPU),
// which is how items streaming from a producer on another CPU are taken
// without a sleep and a wake-up each: consumers batch naturally, and a
// lone item costs no extra latency.
//
// # Platforms
//
// Linux only (any architecture). A build for another system stops with one
// message, "multiproc needs Linux", from package internal/base/linuxonly.
package queue
