// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
	"github.com/spf13/cobra"
)

func demoCmd() *cobra.Command {
	var messages int
	var o mandelOpts
	var noPython bool
	var starts int
	var c clusterDemoOpts
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the demo: multiproc at work across real processes",
		Long: `demo shows multiproc at work, in seconds, with no arguments:

 1. A Mandelbrot image is rendered by a pool of worker processes straight into
    one shared-memory segment (zero copy), with a live progress bar, first by a
    single worker and then by all of them, for the speed-up. The PNG is written
    to --out. With --chaos, workers are SIGKILLed at random during the run: the
    pool notices each death at once, starts a replacement and re-runs the lost
    band, and the image comes out identical (compare the checksums).
 2. A python3 process connects to a Go Listener with CPython's own
    multiprocessing.connection.Client: the two run CPython's HMAC challenge
    handshake both ways and exchange messages in CPython's wire format.
 3. What starting a process costs with each start method: spawn (a
    re-execution of this binary, since Go cannot fork) and a forkserver of
    warm processes, for a start+join and for a pool worker that is killed
    and replaced.

With --cluster, part 1 renders the image on the local pool and then on a
cluster pool (package cluster): an embedded NATS server with JetStream and
two agents on this machine, child processes each with its own worker
processes, with the same progress bar. --chaos then SIGKILLs one agent in
the middle of the render instead of workers: its chunks run again on the
other agent after the ack wait, and the cluster's image is checked to be
byte-identical to the local pool's (both checksums are printed).
--url runs it on the agents of an existing cluster instead (credentials
from MULTIPROC_CLUSTER_TOKEN etc., as an agent's).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			w := cmd.OutOrStdout()
			if o.workers <= 0 {
				o.workers = process.CPUCount()
			}
			if o.width < 16 || o.height < 16 || o.maxIter < 1 || o.bandRows < 1 {
				return errors.New("demo: --width and --height must be at least 16, --max-iter and --band-rows at least 1")
			}
			if c.url != "" {
				c.on = true
			}
			if c.on {
				if c.agents < 0 {
					c.agents = 2
					if c.url != "" {
						c.agents = 0
					}
				}
				if c.agentWorkers <= 0 {
					c.agentWorkers = defaultAgentWorkers(c.agents)
				}
				if c.ackWait < 100*time.Millisecond {
					return errors.New("demo: --ack-wait must be at least 100ms")
				}
				if err := demoMandelbrotCluster(ctx, w, o, c); err != nil {
					return err
				}
			} else if err := demoMandelbrot(ctx, w, o); err != nil {
				return err
			}
			if !noPython {
				fmt.Fprintln(w)
				if err := demoPython(ctx, w, messages); err != nil {
					return err
				}
			}
			if starts > 0 {
				fmt.Fprintln(w)
				return demoStarts(ctx, w, starts)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&messages, "messages", 10000, "messages to exchange with the python3 peer")
	f.BoolVar(&noPython, "no-python", false, "skip the python3 part")
	f.IntVar(&starts, "starts", 20, "timed starts per start method in the last part (0 skips it)")
	f.BoolVar(&o.chaos, "chaos", false, "kill random workers during the render; the image must still come out right")
	f.IntVar(&o.workers, "workers", 0, "worker processes (default: the CPUs this process may use)")
	f.IntVar(&o.width, "width", 1600, "image width in pixels")
	f.IntVar(&o.height, "height", 1000, "image height in pixels")
	f.IntVar(&o.maxIter, "max-iter", 1500, "maximum iterations per pixel")
	f.IntVar(&o.bandRows, "band-rows", 8, "rows per task")
	f.StringVar(&o.out, "out", "demo-out", "directory for mandelbrot.png")
	f.BoolVar(&o.baseline, "baseline", true, "also render with one worker first, to show the speed-up")
	f.BoolVar(&c.on, "cluster", false, "render on a cluster pool (embedded NATS server, local agents) and compare with the local pool's image")
	f.StringVar(&c.url, "url", "", "with --cluster: an existing cluster's NATS URL(s) instead of the embedded server (implies --cluster)")
	f.IntVar(&c.agents, "agents", -1, "with --cluster: local agents to start (default 2 with the embedded server, 0 with --url)")
	f.IntVar(&c.agentWorkers, "agent-workers", 0, "with --cluster: worker processes per local agent (default: the CPUs shared among the agents)")
	f.DurationVar(&c.ackWait, "ack-wait", time.Second, "with --cluster: how long a killed agent's chunks wait before they run elsewhere")
	return cmd
}

// pyClient is the python3 peer: plain multiprocessing.connection.Client.
// It reads the address and the hex authkey from stdin (not argv, which
// other users can read), introduces itself, then echoes every message in
// upper case until the Go side closes.
const pyClient = `
import sys, platform
from multiprocessing.connection import Client
address = sys.stdin.readline().strip()
authkey = bytes.fromhex(sys.stdin.readline().strip())
c = Client(address, authkey=authkey)
c.send_bytes(('CPython %s authenticated' % platform.python_version()).encode())
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
	dir, err := os.MkdirTemp("", "mp-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	key := make([]byte, 32)
	rand.Read(key)
	address := filepath.Join(dir, "listener.sock")
	l, err := ipc.Listen("unix", address, ipc.Authkey(key))
	if err != nil {
		return err
	}
	defer l.Close()

	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", pyClient)
	cmd.Stdin = strings.NewReader(address + "\n" + hex.EncodeToString(key) + "\n")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	waited := false
	defer func() {
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	fmt.Fprintf(w, "Go (pid %d) listens on %s with a 32-byte authkey\n", os.Getpid(), address)
	actx, acancel := context.WithTimeout(ctx, 15*time.Second)
	c, err := l.Accept(actx)
	acancel()
	if err != nil {
		return fmt.Errorf("accepting the python3 client: %w", err)
	}
	defer c.Close()
	hello, err := c.RecvBytes(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  python3 (pid %d) connected with multiprocessing.connection.Client: %s\n", cmd.Process.Pid, hello)
	fmt.Fprintln(w, "  (HMAC challenge handshake both ways, CPython's wire format)")

	// Someone without the key is turned away, on both sides.
	go func() {
		if c, err := l.Accept(ctx); err == nil {
			c.Close()
		}
	}()
	_, err = ipc.Dial(ctx, "unix", address, ipc.Authkey([]byte("a guess")))
	if !errors.Is(err, ipc.ErrAuthentication) {
		return fmt.Errorf("a client with a wrong key was not refused: %v", err)
	}
	fmt.Fprintf(w, "  a client with the wrong key is refused: %v\n", err)

	msg := []byte("hello from go")
	reply, err := roundTrip(ctx, c, msg)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  sent %q, python answered %q\n", msg, reply)
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := roundTrip(ctx, c, msg); err != nil {
			return err
		}
	}
	el := time.Since(start)
	fmt.Fprintf(w, "  %d round trips in %v (%.1f µs each)\n", n, el.Round(time.Millisecond), float64(el.Microseconds())/float64(max(n, 1)))
	c.Close()
	waited = true
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
