// SPDX-License-Identifier: Apache-2.0

package tracker_test

import (
	"context"
	"fmt"
	"os"

	"github.com/multiproc/multiproc/tracker"
)

// A program (whose main calls process.Init first) registers a named
// resource it created; if the whole tree dies without unregistering it,
// the tracker unlinks /dev/shm/<name> and logs a warning naming it.
func Example() {
	ctx := context.Background()
	name := fmt.Sprintf("example_tracker_%d", os.Getpid())
	f, err := os.OpenFile("/dev/shm/"+name, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		fmt.Println(err)
		return
	}
	f.Close()
	if err := tracker.Register(ctx, tracker.SharedMemory, name); err != nil {
		fmt.Println(err)
		return
	}
	res, _ := tracker.List(ctx)
	fmt.Println(len(res), res[0].Type, res[0].Name == name)

	// Normal removal: unlink, then unregister.
	os.Remove("/dev/shm/" + name)
	tracker.Unregister(ctx, tracker.SharedMemory, name)
	res, _ = tracker.List(ctx)
	fmt.Println(len(res))
	// Output:
	// 1 shared_memory true
	// 0
}
