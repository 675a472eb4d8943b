// SPDX-License-Identifier: Apache-2.0

// Package race tells the race detector about the happens-before edges that
// multiproc's primitives create through shared memory.
//
// The race detector does not see atomic operations on memory outside the
// Go heap (a shared mapping), so it would miss the edge between, say, a
// lock's release and the next acquisition by another goroutine of the same
// process, or a queue producer publishing an item and a consumer reading
// it. Under -race every release also bumps, and every acquisition also
// reads, a Go-heap token kept per shared address, which the detector does
// see. Edges between processes need no annotation: each process has its
// own detector. Without -race every function here is empty and inlined
// away.
package race
