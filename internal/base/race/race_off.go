// SPDX-License-Identifier: Apache-2.0

//go:build !race

package race

import "unsafe"

// Enabled reports whether the program was built with -race.
const Enabled = false

// Acquire marks an acquisition through the shared word at p (a no-op
// without -race).
func Acquire(unsafe.Pointer) {}

// Release marks a release through the shared word at p (a no-op without
// -race).
func Release(unsafe.Pointer) {}

// Sync is Acquire and Release at once (a no-op without -race).
func Sync(unsafe.Pointer) {}
