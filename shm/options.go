package shm

// Option configures Create (and the constructors of named Values, Arrays
// and ShareableLists).
type Option func(*options)

type options struct {
	untracked bool
	byteSlots bool
}

// Untracked creates a named segment that is never registered with the
// resource tracker (CPython 3.13's track=False): nobody unlinks it but an
// explicit Unlink, even if every process dies.
func Untracked() Option { return func(o *options) { o.untracked = true } }

// trackerHook is the seam for the resource tracker. The tracker module is
// built on top of the process module; once it exists, a file of this
// package that imports it sets tracking, and named segments created by
// this process (without Untracked) are registered on creation and
// unregistered on Unlink. Until then tracking is nil and nothing is
// registered.
type trackerHook interface {
	// Register records that this process tree created the named segment
	// (name without the leading "/").
	Register(name string) error
	// Unregister forgets it after an Unlink.
	Unregister(name string) error
}

// tracking is nil until the tracker integration lands.
var tracking trackerHook
