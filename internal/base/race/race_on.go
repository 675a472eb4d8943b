// SPDX-License-Identifier: Apache-2.0

//go:build race

package race

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// Enabled reports whether the program was built with -race.
const Enabled = true

var tokens sync.Map // uintptr -> *uint32

func token(p unsafe.Pointer) *uint32 {
	v, _ := tokens.LoadOrStore(uintptr(p), new(uint32))
	return v.(*uint32)
}

// Acquire marks an acquisition through the shared word at p: it happens
// after every Release (and Sync) at p that it observed.
func Acquire(p unsafe.Pointer) { atomic.LoadUint32(token(p)) }

// Release marks a release through the shared word at p.
func Release(p unsafe.Pointer) { atomic.AddUint32(token(p), 1) }

// Sync is Acquire and Release at once, for a publication or an
// observation that may be either.
func Sync(p unsafe.Pointer) { atomic.AddUint32(token(p), 1) }
