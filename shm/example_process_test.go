// SPDX-License-Identifier: Apache-2.0

package shm_test

import (
	"context"
	"fmt"
	"log"

	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/shm"
)

// addMany runs in a child process: it gets its own mapping of the parent's
// counter (the *shm.Value argument is a handle) and adds to it.
var addMany = process.Register("shm.example.addMany", func(ctx context.Context, c *shm.Value[int64], n int) error {
	defer c.Close()
	for range n {
		c.Add(1) // atomic: integer Values use sync/atomic on the shared word
	}
	return nil
})

// Shared memory between processes, Python's Value recipe: four child
// processes add to one counter in an anonymous segment, and the parent sees
// every increment. The segment is a memfd, so it cannot leak: the kernel
// frees it when the last process using it closes it.
func Example_processes() {
	ctx := context.Background()
	counter, err := shm.NewValue[int64](0)
	if err != nil {
		log.Fatal(err)
	}
	defer counter.Close()
	var procs []*process.Process
	for range 4 {
		p := &process.Process{Func: addMany, Args: []any{counter, 10000}}
		if err := p.Start(ctx); err != nil {
			log.Fatal(err)
		}
		procs = append(procs, p)
	}
	for _, p := range procs {
		if err := p.Wait(); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println(counter.Load())
	// Output: 40000
}
