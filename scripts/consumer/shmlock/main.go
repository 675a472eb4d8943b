// SPDX-License-Identifier: Apache-2.0

// Shmlock is the second program make release-check builds outside the
// repository: four processes add to a counter in shared memory (shm), each
// read-modify-write under a cross-process lock (syncprim).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/shm"
	"github.com/multiproc/multiproc/syncprim"
)

// Add runs in child processes: it increments counter n times under l.
var Add = process.Register("add", func(ctx context.Context, l *syncprim.Lock, counter *shm.Value[int64], n int) error {
	defer l.Close()
	defer counter.Close()
	for i := 0; i < n; i++ {
		if err := l.Acquire(ctx); err != nil {
			return err
		}
		counter.Store(counter.Load() + 1) // not atomic: the lock protects it
		if err := l.Release(); err != nil {
			return err
		}
	}
	return nil
})

func main() {
	process.Init() // first thing: in a child process this runs Add and exits
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	l, err := syncprim.NewLock()
	if err != nil {
		return err
	}
	defer l.Close()
	counter, err := shm.NewValue[int64](0)
	if err != nil {
		return err
	}
	defer counter.Close()
	var ps []*process.Process
	for i := 0; i < 4; i++ {
		p := Add.Process(l, counter, 1000)
		if err := p.Start(ctx); err != nil {
			return err
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		if err := p.Wait(); err != nil {
			return err
		}
	}
	fmt.Println(counter.Load())
	return nil
}
