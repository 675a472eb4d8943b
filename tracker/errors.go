// SPDX-License-Identifier: Apache-2.0

package tracker

import "errors"

var (
	// ErrUnknownType is returned for a resource type never given to
	// RegisterType.
	ErrUnknownType = errors.New("tracker: unknown resource type")
	// ErrBadName is returned for a name that is empty, longer than
	// MaxNameLen bytes, or holds a NUL byte.
	ErrBadName = errors.New("tracker: bad resource name")
	// ErrNotRunning is returned by List when this process has no tracker
	// (it neither started nor inherited one).
	ErrNotRunning = errors.New("tracker: no tracker for this process tree")
	// ErrStart is wrapped by the error of a tracker that could not be
	// started (for example because main does not call process.Init).
	ErrStart = errors.New("tracker: cannot start the tracker")
)
