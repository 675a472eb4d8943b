package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/multiproc/multiproc/ipc"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func demoCmd() *cobra.Command {
	var messages int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the demo: multiproc at work across real processes",
		Long: `demo shows multiproc at work. Today it has a Go process and a python3
process talk over one connection in CPython's own wire format: the Python side
is plain multiprocessing.connection, unchanged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return demoPython(cmd.Context(), cmd.OutOrStdout(), messages)
		},
	}
	cmd.Flags().IntVar(&messages, "messages", 10000, "messages to exchange with the python3 peer")
	return cmd
}

// pyEcho is the python3 peer: CPython's own Connection on an inherited fd.
const pyEcho = `
import sys
from multiprocessing.connection import Connection
c = Connection(int(sys.argv[1]))
while True:
    try:
        b = c.recv_bytes()
    except EOFError:
        break
    c.send_bytes(b.upper())
`

func demoPython(ctx context.Context, w io.Writer, n int) error {
	if ctx == nil {
		ctx = context.Background()
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		return fmt.Errorf("the demo needs python3 on PATH: %w", err)
	}
	ours, theirs, err := ipc.Pipe(true, ipc.Socketpair())
	if err != nil {
		return err
	}
	defer ours.Close()
	files, _, err := theirs.MultiprocHandle()
	theirs.Close()
	if err != nil {
		return err
	}
	// CPython's Connection expects a blocking descriptor.
	for _, f := range files {
		if raw, err := f.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) { unix.SetNonblock(int(fd), false) })
		}
	}
	cmd := exec.CommandContext(ctx, py, "-c", pyEcho, "3")
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	for _, f := range files {
		f.Close()
	}
	fmt.Fprintf(w, "Go (pid %d) <-> python3 (pid %d), CPython's multiprocessing.connection framing\n", os.Getpid(), cmd.Process.Pid)
	msg := []byte("hello from go")
	reply, err := roundTrip(ctx, ours, msg)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  sent %q, python answered %q\n", msg, reply)
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := roundTrip(ctx, ours, msg); err != nil {
			return err
		}
	}
	el := time.Since(start)
	fmt.Fprintf(w, "  %d round trips in %v (%.1f µs each)\n", n, el.Round(time.Millisecond), float64(el.Microseconds())/float64(max(n, 1)))
	ours.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("python3 peer: %w", err)
	}
	fmt.Fprintln(w, "  python3 exited cleanly after our close")
	return nil
}

func roundTrip(ctx context.Context, c *ipc.Conn, msg []byte) ([]byte, error) {
	if err := c.SendBytes(ctx, msg); err != nil {
		return nil, err
	}
	return c.RecvBytes(ctx)
}
