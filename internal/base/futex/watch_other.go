// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package futex

// A Watch is never created on this system.
type Watch struct{}

// WatchExit cannot watch on this system: callers poll Alive.
func WatchExit(id ID, word *uint32) (w *Watch, dead bool) { return nil, id == 0 }

// Fired reports false.
func (w *Watch) Fired() bool { return false }

// Broken reports true.
func (w *Watch) Broken() bool { return true }

// ID returns 0.
func (w *Watch) ID() ID { return 0 }

// Stop does nothing.
func (w *Watch) Stop() {}
