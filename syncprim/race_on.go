// SPDX-License-Identifier: Apache-2.0

//go:build race

package syncprim

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// The race detector does not see atomic operations on memory outside the
// Go heap (our shared mappings), so it would miss the happens-before edges
// that the primitives create. Under -race, every release also bumps, and
// every acquisition also reads, a Go-heap token per shared address, which
// the detector does see. (Edges between processes need no annotation: each
// process has its own detector.)
var raceTokens sync.Map // uintptr -> *uint32

func raceToken(p unsafe.Pointer) *uint32 {
	v, _ := raceTokens.LoadOrStore(uintptr(p), new(uint32))
	return v.(*uint32)
}

func raceAcquire(p unsafe.Pointer) { atomic.LoadUint32(raceToken(p)) }
func raceRelease(p unsafe.Pointer) { atomic.AddUint32(raceToken(p), 1) }
