// SPDX-License-Identifier: Apache-2.0

package shm

import (
	"context"

	"github.com/multiproc/multiproc/tracker"
)

// trackerClient connects the segments to the resource tracker of the
// process tree (package tracker).
type trackerClient struct{}

func init() { tracking = trackerClient{} }

// Register starts the tree's tracker on the first call (one process
// start); after that it is one write(2) to the tracker's pipe.
func (trackerClient) Register(name string) error {
	return tracker.Register(context.Background(), tracker.SharedMemory, name)
}

// Unregister never starts a tracker.
func (trackerClient) Unregister(name string) error {
	return tracker.Unregister(context.Background(), tracker.SharedMemory, name)
}
