// SPDX-License-Identifier: Apache-2.0

package syncprim

import "unsafe"

// Compile-time checks that every shared layout fits the bytes reserved for
// it (a negative array length fails the build).
var (
	_ [LockSize - unsafe.Sizeof(lockMem{})]byte
	_ [RLockSize - unsafe.Sizeof(rlockMem{})]byte
	_ [SemaphoreSize - unsafe.Sizeof(semMem{})]byte
	_ [EventSize - unsafe.Sizeof(eventMem{})]byte
	_ [BarrierSize - unsafe.Sizeof(barrierMem{})]byte
	_ [condLockOff - unsafe.Sizeof(condMem{})]byte
	_ [condSlotsOff - condLockOff - RLockSize]byte
	_ [16 - unsafe.Sizeof(condSlot{})]byte
	_ [ownedSlotsOff - unsafe.Sizeof(ownedSemMem{})]byte
	// 64-bit words must be 8-byte aligned within their layouts.
	_ [-(unsafe.Offsetof(lockMem{}.owner) % 8)]byte
	_ [-(unsafe.Offsetof(barrierMem{}.lock) % 8)]byte
	_ [-(unsafe.Offsetof(condSlot{}.owner) % 8)]byte
)
