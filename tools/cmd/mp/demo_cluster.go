// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/multiproc/multiproc/cluster"
	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/process"
)

// clusterDemoOpts are mp demo --cluster's own flags.
type clusterDemoOpts struct {
	on           bool
	url          string // an existing cluster; "": the embedded server
	agents       int
	agentWorkers int
	ackWait      time.Duration
}

// bandJob is one band of the image for a cluster agent, which may run on
// another host: the view travels with it, and the rows come back in the
// result instead of through shared memory.
type bandJob struct {
	V      view
	Y0, Y1 int32
}

// demoBandRows renders a band and returns its iteration counts as
// little-endian uint16s.
var demoBandRows = pool.Register("mp.demo.bandrows", func(ctx context.Context, j bandJob) ([]byte, error) {
	v := j.V
	if v.Width < 1 || v.Height < 1 || j.Y0 < 0 || j.Y1 <= j.Y0 || int(j.Y1) > v.Height || v.Width*v.Height > 1<<26 {
		return nil, fmt.Errorf("demo: bad band %d..%d of a %dx%d image", j.Y0, j.Y1, v.Width, v.Height)
	}
	rows := make([]uint16, int(j.Y1-j.Y0)*v.Width)
	renderRows(v, rows, int(j.Y0), int(j.Y1))
	out := make([]byte, 2*len(rows))
	for i, n := range rows {
		binary.LittleEndian.PutUint16(out[2*i:], n)
	}
	return out, nil
})

// renderMandelbrotCluster renders the image on a cluster pool: two local
// agents (child processes, each with its own worker processes) behind
// the embedded NATS server by default, or the agents of an existing
// cluster (c.url). With o.chaos it SIGKILLs one local agent once a third
// of the bands are done: the chunks it held run again on the other agent
// after the ack wait.
func renderMandelbrotCluster(ctx context.Context, w io.Writer, o mandelOpts, c clusterDemoOpts) (*mandelResult, []uint16, error) {
	v := demoView(o)
	opts := []cluster.Option{cluster.AckWait(c.ackWait)}
	creds, err := cluster.CredentialsFromEnv()
	if err != nil {
		return nil, nil, err
	}
	if creds != (cluster.Credentials{}) {
		opts = append(opts, cluster.Auth(creds))
	}
	if c.url != "" {
		opts = append(opts, cluster.URL(c.url))
	}
	if c.agents >= 0 {
		opts = append(opts, cluster.Agents(c.agents))
	}
	opts = append(opts, cluster.AgentWorkers(c.agentWorkers))
	if o.chaos && c.agents < 2 {
		return nil, nil, errors.New("demo: --chaos on a cluster needs at least two local agents (--agents)")
	}
	nctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	p, err := cluster.New(nctx, opts...)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	defer p.Close()
	where := "the embedded NATS server " + p.URL()
	if c.url != "" {
		where = c.url
	}
	if c.agents > 0 {
		fmt.Fprintf(w, "  cluster: %s, %d local agents of %d worker process(es) each (pids %v)\n", where, c.agents, c.agentWorkers, p.LocalAgentPids())
	} else {
		// The agents of an existing cluster: wait a moment for their
		// status entries (more may join while the render runs; with none,
		// the render waits for one).
		var pids []int
		for deadline := time.Now().Add(5 * time.Second); ; {
			pids = pids[:0]
			for _, a := range p.Agents() {
				if a.Match {
					pids = append(pids, a.Pid)
				}
			}
			if len(pids) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		fmt.Fprintf(w, "  cluster: %s, %d agents of this build so far (pids %v)\n", where, len(pids), pids)
	}

	bands := demoBands(o)
	jobs := make([]bandJob, len(bands))
	for i, b := range bands {
		jobs[i] = bandJob{V: v, Y0: b.Y0, Y1: b.Y1}
	}
	bar := &progressBar{w: w, tty: isTTY(w), label: "cluster  "}
	res := &mandelResult{}
	var killMu sync.Mutex // the kill happens in a callback, on a pool goroutine
	var killMsg string
	var once sync.Once
	start := time.Now()
	rows, err := demoBandRows.Map(ctx, p, jobs, pool.Chunksize(1), pool.OnProgress(func(pr pool.Progress) {
		bar.update(pr.Done, pr.Failed, pr.Total)
		if o.chaos && pr.Done >= max(pr.Total/3, 1) && pr.Done < pr.Total {
			once.Do(func() {
				pids := p.LocalAgentPids()
				if len(pids) == 0 {
					return
				}
				if syscall.Kill(pids[0], syscall.SIGKILL) == nil {
					killMu.Lock()
					defer killMu.Unlock()
					res.kills++
					killMsg = fmt.Sprintf("  chaos: SIGKILLed agent pid %d (its workers go with it) at %d/%d bands; the chunks it held ran again on another agent after the %v ack wait, and the pool started a replacement agent\n",
						pids[0], pr.Done, pr.Total, c.ackWait)
				}
			})
		}
	}))
	res.elapsed = time.Since(start)
	bar.finish()
	if err != nil {
		return nil, nil, err
	}
	killMu.Lock()
	kills, msg := res.kills, killMsg
	killMu.Unlock()
	if o.chaos {
		if kills == 0 {
			return nil, nil, errors.New("demo: --chaos killed no agent (the render ended first)")
		}
		fmt.Fprint(w, msg)
		if st := p.Stats(); st.Duplicates > 0 {
			fmt.Fprintf(w, "  chaos: %d results came twice (a chunk finished by the killed agent and again elsewhere); the duplicates were dropped\n", st.Duplicates)
		}
	}
	px := make([]uint16, 0, v.Width*v.Height)
	for i, r := range rows {
		if len(r) != 2*int(jobs[i].Y1-jobs[i].Y0)*v.Width {
			return nil, nil, fmt.Errorf("demo: band %d came back with %d bytes", i, len(r))
		}
		for k := 0; k < len(r); k += 2 {
			n := binary.LittleEndian.Uint16(r[k:])
			px = append(px, n)
			res.iters += int64(n)
		}
	}
	res.checksum = pixelChecksum(px)
	if res.png, err = writeDemoPNG(o.out, "mandelbrot-cluster.png", v, px); err != nil {
		return nil, nil, err
	}
	return res, px, nil
}

// demoMandelbrotCluster renders the image on the local pool, then on the
// cluster pool, and checks the two are byte-identical.
func demoMandelbrotCluster(ctx context.Context, w io.Writer, o mandelOpts, c clusterDemoOpts) error {
	fmt.Fprintf(w, "Mandelbrot %dx%d (max %d iterations) rendered by a local pool, then by a cluster pool over NATS JetStream\n",
		o.width, o.height, o.maxIter)
	lo := o
	lo.chaos = false
	local, err := renderMandelbrot(ctx, w, lo, o.workers, fmt.Sprintf("%d workers", o.workers), true)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  local pool, %d workers: %v, image checksum %s\n", o.workers, local.elapsed.Round(time.Millisecond), local.checksum)
	cl, _, err := renderMandelbrotCluster(ctx, w, o, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  cluster pool: %v, image checksum %s\n", cl.elapsed.Round(time.Millisecond), cl.checksum)
	a, err := os.ReadFile(local.png)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(cl.png)
	if err != nil {
		return err
	}
	if cl.checksum != local.checksum || !bytes.Equal(a, b) {
		return fmt.Errorf("demo: the cluster's image differs from the local pool's (%s vs %s)", cl.checksum, local.checksum)
	}
	fmt.Fprintf(w, "  byte-identical to the local pool's image: %s and %s\n", local.png, cl.png)
	return nil
}

// defaultAgentWorkers shares this machine's CPUs among the local agents.
func defaultAgentWorkers(agents int) int {
	return max(1, process.CPUCount()/max(agents, 1))
}
