// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"fmt"
	"os"
	"sync/atomic"
)

// Event, Semaphore, RLock and Barrier keep the same two fields: a pointer
// to their words in shared memory (nil once closed) and the region that
// maps them. These helpers are their Close, MultiprocHandle and
// MultiprocAttach. (Lock keeps a plain pointer on its hot path and
// Condition carries its lock, so they have their own.)

// closeMapped releases this process's handle; a second call is a no-op.
func closeMapped[M any](m *atomic.Pointer[M], reg *region) error {
	if m.Swap(nil) == nil {
		return nil
	}
	return reg.close()
}

// describeMapped is MultiprocHandle: duplicates of the region's files and
// a descriptor of kind k.
func describeMapped[M any](m *atomic.Pointer[M], reg *region, k kind) ([]*os.File, []byte, error) {
	if m.Load() == nil {
		return nil, nil, ErrClosed
	}
	return reg.handle(k)
}

// attachMapped is MultiprocAttach on a zero value: it maps the region
// described by desc (of kind k) and points m at its words. It takes
// ownership of files. what names the type for the error ("an Event").
func attachMapped[M any](m *atomic.Pointer[M], reg **region, files []*os.File, desc []byte, k kind, what string) error {
	if m.Load() != nil {
		closeFiles(files)
		return fmt.Errorf("%w: MultiprocAttach on %s in use", ErrBadHandle, what)
	}
	r, err := attachRegion(files, desc, k)
	if err != nil {
		return err
	}
	*reg = r
	m.Store((*M)(r.p))
	return nil
}
