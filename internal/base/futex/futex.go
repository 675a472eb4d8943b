// SPDX-License-Identifier: Apache-2.0

// Package futex holds the low-level pieces that multiproc's primitives
// (syncprim's locks and semaphores, queue's rings) are made of:
// FUTEX_WAIT/FUTEX_WAKE on shared (not process-private) 32-bit words, and
// process identities (pid plus start time) with a liveness check that pid
// reuse cannot fool, and a watch on a process's exit. Package spin has the
// spin-then-wait policy.
//
// Everything here operates on raw pointers into shared memory. Callers
// guarantee that every address is 4-byte aligned (8-byte for 64-bit words)
// and stays mapped for the duration of each call.
package futex

import (
	"errors"
	"time"

	// A build for another system stops in linuxonly with one clear message.
	_ "github.com/multiproc/multiproc/internal/base/linuxonly"
)

// ErrTimeout is returned by Wait when its timeout elapsed.
var ErrTimeout = errors.New("futex: timeout")

// Forever is the timeout of a Wait that only a wake-up ends.
const Forever time.Duration = -1
