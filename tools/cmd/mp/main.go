// SPDX-License-Identifier: Apache-2.0

// Command mp is multiproc's command-line tool: the demo, the side-by-side
// benchmark report, and (as the modules land) inspection of shared memory
// and the resource tracker, and a standalone manager server.
//
//	mp demo            run the demo
//	mp bench [--quick] benchmarks beside CPython's multiprocessing
package main

import (
	"fmt"
	"os"

	"github.com/multiproc/multiproc/process"
	"github.com/spf13/cobra"
)

func main() {
	process.Init() // mp starts children: in a child, this runs its function and exits
	root := &cobra.Command{
		Use:           "mp",
		Short:         "multiproc: process-based parallelism for Go",
		Long:          "mp is multiproc's command-line tool: the demo, benchmarks beside CPython's\nmultiprocessing, and inspection of what multiproc leaves in the system.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(demoCmd(), benchCmd())
	root.AddCommand(shmCmd(), managerCmd(), trackerCmd(), clusterCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mp:", err)
		os.Exit(1)
	}
}
