// SPDX-License-Identifier: Apache-2.0

package shm

// Option configures Create (and the constructors of named Values, Arrays
// and ShareableLists).
type Option func(*options)

type options struct {
	untracked bool
	byteSlots bool
	scope     *Scope // InScope
}

// Untracked creates a named segment that is never registered with the
// resource tracker (CPython 3.13's track=False): nobody unlinks it but an
// explicit Unlink, even if every process dies.
func Untracked() Option { return func(o *options) { o.untracked = true } }

// trackerHook is the seam for the resource tracker: tracking.go sets it
// to the tracker package's client. Named segments created by this process
// (without Untracked) are registered on creation, and every successful
// Unlink of a named segment unregisters it.
type trackerHook interface {
	// Register records that this process tree created the named segment
	// (name without the leading "/").
	Register(name string) error
	// Unregister forgets it after an Unlink.
	Unregister(name string) error
}

// tracking is the tracker client (nil: no tracking, as in tests that
// replace it).
var tracking trackerHook
