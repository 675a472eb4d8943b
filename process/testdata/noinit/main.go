// SPDX-License-Identifier: Apache-2.0

// Noinit is the mistake TestNoInitOnce makes on purpose: a main that does
// not call process.Init() first. Its child runs main again and tries to
// start a child of its own; the program must then say so once.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/multiproc/multiproc/process"
)

var hello = process.Register("noinit.hello", func(ctx context.Context) error { return nil })

func main() {
	// process.Init() is missing here.
	p := hello.Process()
	if err := p.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		os.Exit(1)
	}
	if err := p.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, "wait:", err)
		os.Exit(1)
	}
	fmt.Println("the child ran")
}
