// SPDX-License-Identifier: Apache-2.0

// Package cachecopy copies bytes that another process reads next through
// shared memory (a queue's ring) so that they stay in the CPU caches, and
// copies bytes out into new memory that is not cleared first (Clone).
//
// Go's copy of 1 MiB or more (runtime memmove, amd64) uses non-temporal
// stores, which bypass the caches and send every byte to main memory:
// right for a copy nobody reads soon, wrong for bytes that the process on
// the other CPU reads a few microseconds later, which then come back from
// main memory too. Copying in pieces below that size keeps ordinary
// stores: on the 2-CPU development VM (2 MiB of L2 per core, 32 MiB of
// shared L3) a stream of 1 MiB queue items went from about 7 to 10-20
// GB/s (docs/performance.md, "Big data").
package cachecopy

import (
	"strings"
	"unsafe"
)

// Piece is the size of the pieces Copy copies: below the size from which
// the runtime's copy stores non-temporally (1 MiB on amd64), large
// enough that the per-call cost does not show.
const Piece = 512 << 10

// Copy is copy(dst, src), in pieces of at most Piece bytes: it copies
// min(len(dst), len(src)) bytes and returns that number. dst and src
// must not overlap.
func Copy(dst, src []byte) int {
	n := min(len(dst), len(src))
	for i := 0; i < n; i += Piece {
		j := min(n, i+Piece)
		copy(dst[i:j], src[i:j])
	}
	return n
}

// Clone returns the concatenation of parts in new memory of its own, not
// cleared first: for large bytes, clearing new memory (make) costs as
// much as the copy itself. Unlike Copy it copies with the runtime's copy
// (non-temporal stores from 1 MiB on): the memory is new and private,
// and nobody is known to read it soon (measured with queue's Get: no
// difference that the load on the development VM let show). The
// memory comes from strings.Builder, the standard library's way to such
// memory; the string it builds is never used as one, only its bytes,
// which are the caller's to keep and to change.
func Clone(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n == 0 {
		return []byte{}
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, p := range parts {
		sb.Write(p)
	}
	s := sb.String()
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// Append is append(dst, src...), the bytes copied as Copy copies them.
func Append(dst, src []byte) []byte {
	for len(src) > 0 {
		k := min(len(src), Piece)
		dst = append(dst, src[:k]...)
		src = src[k:]
	}
	return dst
}
