// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package futex

import "time"

// Wait returns ErrUnsupported: futex(2) exists only on Linux.
func Wait(addr *uint32, val uint32, timeout time.Duration) error { return ErrUnsupported }

// Wake does nothing: futex(2) exists only on Linux.
func Wake(addr *uint32, n int) int { return 0 }

// WakeAll does nothing: futex(2) exists only on Linux.
func WakeAll(addr *uint32) int { return 0 }
