// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/multiproc/multiproc/forkserver"
	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/process"
)

// The demo's third part: what a start costs with each start method.
var (
	demoEmpty = process.Register("mp.demo.empty", func(context.Context) error { return nil })
	demoPid   = pool.Register("mp.demo.pid", func(context.Context, int) (int, error) { return os.Getpid(), nil })
)

// demoStarts times start+join of an empty function, and the replacement
// of a SIGKILLed pool worker, with Spawn and with a forkserver whose warm
// set is refilled between the timed runs. It prints medians: the figures
// are for reading, not checks.
func demoStarts(ctx context.Context, w io.Writer, n int) error {
	fs, err := forkserver.New(forkserver.Size(2))
	if err != nil {
		return err
	}
	defer fs.Close()
	fmt.Fprintf(w, "Starting processes (medians of %d): Go cannot fork, so a spawned child re-executes this binary;\n", n)
	fmt.Fprintln(w, "a forkserver keeps processes that did that already (process.SetDefaultStarter(fs) makes it the default)")
	methods := []struct {
		name string
		s    process.Starter
	}{{"spawn", process.Spawn}, {"forkserver", fs}}
	var startJoin, replace [2]time.Duration
	for i, m := range methods {
		startJoin[i], err = medianOf(n, func() (time.Duration, error) {
			if err := fs.Warm(ctx); err != nil {
				return 0, err
			}
			t0 := time.Now()
			p := demoEmpty.Process()
			p.Starter = m.s
			if err := p.Start(ctx); err != nil {
				return 0, err
			}
			err := p.Wait()
			return time.Since(t0), err
		})
		if err != nil {
			return fmt.Errorf("demo: start+join with %s: %w", m.name, err)
		}
		if replace[i], err = replaceWorker(ctx, fs, m.s, n); err != nil {
			return fmt.Errorf("demo: pool worker replacement with %s: %w", m.name, err)
		}
	}
	fmt.Fprintf(w, "  %-44s %8s %11s\n", "", "spawn", "forkserver")
	fmt.Fprintf(w, "  %-44s %5.2f ms %8.2f ms\n", "start+join of an empty function", ms(startJoin[0]), ms(startJoin[1]))
	fmt.Fprintf(w, "  %-44s %5.2f ms %8.2f ms\n", "pool worker SIGKILLed, replaced, task done", ms(replace[0]), ms(replace[1]))
	return nil
}

// replaceWorker times, in a pool of one worker started with s, a SIGKILL
// of the worker until a task has run on its replacement.
func replaceWorker(ctx context.Context, fs *forkserver.Starter, s process.Starter, n int) (time.Duration, error) {
	p, err := pool.New(ctx, pool.Workers(1), pool.Retries(1), pool.Starter(s))
	if err != nil {
		return 0, err
	}
	defer func() {
		p.Terminate()
		p.Join(ctx)
	}()
	return medianOf(n, func() (time.Duration, error) {
		if err := fs.Warm(ctx); err != nil {
			return 0, err
		}
		old, err := demoPid.Apply(ctx, p, 0)
		if err != nil {
			return 0, err
		}
		t0 := time.Now()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			return 0, err
		}
		pid, err := demoPid.Apply(ctx, p, 0)
		d := time.Since(t0)
		if err == nil && pid == old {
			err = fmt.Errorf("the task ran on the killed worker %d", old)
		}
		return d, err
	})
}

func medianOf(n int, f func() (time.Duration, error)) (time.Duration, error) {
	ds := make([]time.Duration, 0, n)
	for range n {
		d, err := f()
		if err != nil {
			return 0, err
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
