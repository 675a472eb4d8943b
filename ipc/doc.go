// SPDX-License-Identifier: Apache-2.0

// Package ipc provides framed connections between processes with CPython's
// multiprocessing.connection wire format, so that a Go process and a Python
// process (or two Go processes) exchange messages, authenticate each other
// and pass open files.
//
// # Connections
//
// A [Conn] carries frames: each message is a 4-byte big-endian length and
// the payload (an 8-byte length after -1 for frames over 2 GiB), exactly
// what CPython's Connection.send_bytes writes. [Conn.SendBytes] and
// [Conn.RecvBytes] move raw frames; [Conn.Send] and [Conn.Recv] encode
// values with a [Codec] (protobuf for proto.Message, raw for []byte, gob
// otherwise; the subpackage ipc/pickle is a Codec that speaks pickles to a
// CPython peer's Connection.send and recv, safely). Empty frames are legal. A frame larger than the Conn's
// maximum ([MaxFrameSize]) is refused with a [*FrameTooLargeError] before
// anything of that size is allocated. At a clean end of stream a receive
// returns io.EOF; a stream cut inside a frame returns [ErrTruncated].
//
// [Pipe] returns a connected pair, like CPython's Pipe(duplex): two pipes
// for a duplex pair (the fastest transport for small messages; a pipe grows
// to 1 MiB when large frames go through it), or a unix socketpair with
// [Socketpair], which can also pass files. A simplex pair is a read-only
// and a write-only end ([ErrReadOnly], [ErrWriteOnly]).
//
// [Listen] and [Dial] connect over unix sockets (paths, and Linux abstract
// names written "@name" or "\x00name") and TCP. With [Authkey] both
// sides run CPython's HMAC challenge handshake, which interoperates with
// CPython 3.11 (HMAC-MD5) and 3.12+ ({sha256}-prefixed) peers in both
// directions; [Strict] refuses the MD5 generation. A wrong key fails on
// both sides with [ErrAuthentication]. Handshakes run concurrently
// in the background, never inside [Listener.Accept]: a peer that connects
// and stays silent holds only its own handshake (bounded by
// [HandshakeTimeout]), and [MaxHandshakes] bounds the connections pending,
// overall and per peer, shedding the oldest. Accept reports a refused
// connection with a [*HandshakeError] naming the peer. [TLS] adds TLS to a TCP
// Listener and Dial: a TLS handshake first, then the authkey handshake and
// every frame inside TLS. Such a Conn behaves like any other (same
// cancellation, Wait) but cannot pass files or be handed to a child: TLS
// ends in a pair of goroutines that copy between the TLS connection and a
// socketpair the Conn runs on (see TLS for why and what it costs).
// PROTOCOL.md in this directory describes every byte on the wire.
//
// [Conn.SendFiles] and [Conn.RecvFiles] pass open files (SCM_RIGHTS) with a
// frame over a unix-socket Conn. Every received descriptor becomes an
// *os.File at once; files that are never collected are closed, so none
// leaks.
//
// # Large values through shared memory
//
// Between two Go ends, [SharedMemory] (set on both) sends payloads larger
// than a threshold (256 KiB by default, [DefaultSharedMemoryThreshold])
// through shared memory: the payload is copied once into a memfd segment
// the sender keeps for reuse, the segment's descriptor travels with a
// 12-byte frame, and the receiver copies ([Conn.RecvBytes],
// [Conn.RecvBytesInto]) or decodes ([Conn.Recv]) straight from its
// mapping, or takes the mapping itself ([Conn.RecvShared], which says who
// owns it and until when). A receiver whose answer is bytes of such a
// payload can hand the segment back instead of copying them
// ([Conn.HandBack]); the sender reads them in its own mapping and frees
// the segment ([Conn.HandedBack]). It needs a unix socket and is a multiproc
// extension: never give such a Conn to a CPython peer. Nothing outlives
// the processes that hold a segment, whoever is killed when.
//
// [Wait] blocks until one of several Conns (or anything with a WaitFD
// method, such as the process package's sentinels) is ready, like
// multiprocessing.connection.wait.
//
// A Conn can be handed to a child process: [Conn.MultiprocHandle] returns
// duplicates of its files and a small descriptor, and
// [Conn.MultiprocAttach] (or [ConnFromHandle]) rebuilds it in the child.
// The process package does this for Conn arguments.
//
// # Concurrency and cancellation
//
// A Conn is safe for concurrent use. Concurrent senders never interleave
// their frames; concurrent receivers each get whole frames. Every blocking
// call takes a context. Cancelling a receive loses nothing: a frame cut off
// by cancellation is resumed by the next receive. Cancelling a send in the
// middle of a frame breaks the sending direction ([ErrBroken]), since the
// peer has already read part of it. Close wakes blocked receivers and
// senders, which return [ErrClosed].
//
// A receive that finds nothing to read (after one that drained the
// descriptor) first retries a few times after sched_yield(2): that catches
// a quick answer without a sleep and wake-up on either side and, when both
// processes share a CPU, lets the peer run instead of burning the CPU. It
// then blocks in poll(2) on its own thread for up to 50 ms (this wakes
// faster than the runtime's netpoller, which costs several microseconds
// per message) and finally parks in the netpoller; a send on a full socket
// waits the same way. Close and cancellation wake them in every phase
// (through an eventfd, then a deadline).
//
// # Platform
//
// The package targets Linux (pipes, unix sockets, eventfd, SCM_RIGHTS,
// abstract socket names).
package ipc

// A build for another system stops in linuxonly with one clear message.
import _ "github.com/multiproc/multiproc/internal/base/linuxonly"
