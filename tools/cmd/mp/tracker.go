// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/multiproc/multiproc/tracker"
	"github.com/spf13/cobra"
)

// listTimeout bounds the questions asked to running trackers.
const listTimeout = 10 * time.Second

func trackerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tracker",
		Short: "Inspect the running resource trackers",
	}
	cmd.AddCommand(trackerLsCmd())
	return cmd
}

func trackerLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List what the running resource trackers hold",
		Long: `ls asks every running multiproc resource tracker of this user (found through
their abstract sockets in /proc/net/unix) what it holds: the named resources
that it will clean up if every process of its tree ends without removing
them. For each: the tracker's pid, the resource type, the name, the pid of
the process that registered it, and, for shared memory, whether the segment
still exists in /dev/shm.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
			defer cancel()
			ts, err := tracker.ListAll(ctx)
			if err != nil {
				return fmt.Errorf("tracker ls: %w", err)
			}
			return printTrackers(cmd.OutOrStdout(), ts)
		},
	}
}

func printTrackers(w io.Writer, ts []tracker.Tracker) error {
	if len(ts) == 0 {
		_, err := fmt.Fprintln(w, "no resource tracker running")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TRACKER\tTYPE\tNAME\tREGISTERED BY\tEXISTS")
	for _, t := range ts {
		if len(t.Resources) == 0 {
			fmt.Fprintf(tw, "%d\t-\t-\t-\t-\n", t.Pid)
		}
		for _, r := range t.Resources {
			exists := "-"
			if r.Type == tracker.SharedMemory {
				exists = "no"
				if _, err := os.Lstat(filepath.Join(shmDir, r.Name)); err == nil {
					exists = "yes"
				}
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\n", t.Pid, r.Type, displayName(r.Name), r.Pid, exists)
		}
	}
	return tw.Flush()
}

// trackedNames returns the /dev/shm names that running trackers hold,
// with the trackers' pids.
func trackedNames() (map[string][]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	ts, err := tracker.ListAll(ctx)
	if err != nil {
		return nil, err
	}
	names := map[string][]int{}
	for _, t := range ts {
		for _, r := range t.Resources {
			if r.Type == tracker.SharedMemory && checkShmName(r.Name) == nil {
				names[r.Name] = append(names[r.Name], t.Pid)
			}
		}
	}
	return names, nil
}
