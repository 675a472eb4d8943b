// SPDX-License-Identifier: Apache-2.0

// Quickstart is the README's example: square numbers on a pool of worker
// processes.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/process"
)

// Tasks are registered at package level, so that the worker processes
// (re-executions of this binary) know them too.
var Square = pool.Register("square", func(ctx context.Context, x int) (int, error) {
	return x * x, nil
})

func main() {
	process.Init() // first thing: in a worker process this runs tasks and exits
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer) error {
	p, err := pool.New(ctx, pool.Workers(4))
	if err != nil {
		return err
	}
	defer p.Terminate()
	squares, err := Square.Map(ctx, p, []int{1, 2, 3, 4, 5})
	if err != nil {
		return err
	}
	fmt.Fprintln(w, squares)
	return nil
}
