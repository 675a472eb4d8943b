// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/process/starter"
	commonpb "github.com/multiproc/multiproc/proto/common/v1"
)

// EnvCluster names the environment variable that turns a program into an
// agent: process.Init() of a program that imports this package runs an
// agent of the cluster at that NATS URL instead of main, until SIGTERM or
// SIGINT. EnvWorkers sets its number of worker processes (default
// process.CPUCount()) and EnvLog its log level (default "info"; logs go
// to standard error).
const (
	EnvCluster = "MULTIPROC_CLUSTER"
	EnvWorkers = "MULTIPROC_CLUSTER_WORKERS"
	EnvLog     = "MULTIPROC_CLUSTER_LOG"
)

func init() {
	starter.RegisterInitHook(EnvCluster, runAgentFromEnv)
}

// runAgentFromEnv is a host agent started with MULTIPROC_CLUSTER=url.
func runAgentFromEnv(url string) {
	workers := process.CPUCount()
	if v := os.Getenv(EnvWorkers); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "cluster: %s=%q: want a positive number\n", EnvWorkers, v)
			os.Exit(2)
		}
		workers = n
	}
	level := zapcore.InfoLevel
	if v := os.Getenv(EnvLog); v != "" {
		if err := level.Set(v); err != nil {
			fmt.Fprintf(os.Stderr, "cluster: %s=%q: %v\n", EnvLog, v, err)
			os.Exit(2)
		}
	}
	log := stderrLogger(level)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := runAgent(ctx, agentConfig{URL: url, Workers: workers}, log)
	stop()
	log.Sync()
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("agent failed", zap.Error(err))
		os.Exit(1)
	}
	os.Exit(0)
}

func stderrLogger(level zapcore.Level) *zap.Logger {
	cfg := zap.NewProductionEncoderConfig()
	cfg.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(cfg), zapcore.Lock(os.Stderr), level)
	return zap.New(core).Named("cluster")
}

// localAgent is the function a local agent process runs.
var localAgent = process.Register("multiproc.cluster.agent", func(ctx context.Context, url string, workers int, level int) error {
	cfg := agentConfig{URL: url, Workers: workers, ExitWithParent: true}
	err := runAgent(ctx, cfg, stderrLogger(zapcore.Level(level)))
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
})

// startLocalAgents starts the local agents and waits until they report
// their capacity.
func (p *Pool) startLocalAgents(ctx context.Context) error {
	level := zapcore.WarnLevel
	for _, l := range []zapcore.Level{zapcore.DebugLevel, zapcore.InfoLevel} {
		if p.log.Core().Enabled(l) {
			level = l
			break
		}
	}
	for i := range p.o.agents {
		proc := localAgent.Process(p.url, p.o.agentWorkers, int(level))
		proc.Name = fmt.Sprintf("ClusterAgent-%d", i+1)
		proc.Logger = p.log
		proc.TermGrace = 5 * time.Second
		if err := proc.Start(ctx); err != nil {
			return fmt.Errorf("cluster: starting a local agent: %w", err)
		}
		p.mu.Lock()
		p.local = append(p.local, proc)
		p.mu.Unlock()
	}
	want := p.o.agents * p.o.agentWorkers
	for {
		p.mu.Lock()
		have := p.capacityLocked()
		p.mu.Unlock()
		if have >= want {
			return nil
		}
		for _, proc := range p.local {
			if !proc.Alive() {
				err := proc.Wait()
				return fmt.Errorf("cluster: a local agent exited before it was ready: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// LocalAgentPids returns the process ids of the local agents still
// running.
func (p *Pool) LocalAgentPids() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pids []int
	for _, proc := range p.local {
		if proc.Alive() {
			pids = append(pids, proc.Pid())
		}
	}
	return pids
}

func (p *Pool) stopLocalAgents() {
	p.mu.Lock()
	local := p.local
	p.local = nil
	p.mu.Unlock()
	for _, proc := range local {
		proc.Terminate()
	}
	for _, proc := range local {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := proc.Join(ctx); err != nil && ctx.Err() != nil {
			proc.Kill()
			proc.Join(context.Background())
		}
		cancel()
		proc.Close()
	}
}

func remoteErr(err error) *commonpb.RemoteError { return remote.Capture(err) }
