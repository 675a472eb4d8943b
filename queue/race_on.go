// SPDX-License-Identifier: Apache-2.0

//go:build race

package queue

import "sync/atomic"

// The race detector does not see atomic operations on memory outside the
// Go heap (the shared mapping), so it would miss the happens-before edge
// between a producer publishing a frame and a consumer of the same
// process reading it (they hold different locks). Under -race every
// publication and every observation also touches a Go-heap token of the
// handle, which the detector does see. Edges between processes need no
// annotation: each process has its own detector.
type raceToken struct{ v atomic.Uint32 }

func (t *raceToken) sync() { t.v.Add(1) }

const raceEnabled = true
