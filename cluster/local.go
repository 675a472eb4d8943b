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
// to standard error). Its credentials come from EnvToken, EnvUser,
// EnvPassword, EnvCreds, EnvNkey, EnvTLSCA, EnvTLSCert and EnvTLSKey
// (CredentialsFromEnv).
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
	creds, err := CredentialsFromEnv()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%v\n", err)
		os.Exit(2)
	}
	log := stderrLogger(level)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err = runAgent(ctx, agentConfig{URL: url, Workers: workers, Creds: creds}, log)
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
var localAgent = process.Register("multiproc.cluster.agent", func(ctx context.Context, url string, workers int, level int, creds Credentials) error {
	cfg := agentConfig{URL: url, Workers: workers, Creds: creds, ExitWithParent: true}
	err := runAgent(ctx, cfg, stderrLogger(zapcore.Level(level)))
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
})

// startLocalAgents starts the local agents and waits until they report
// their capacity.
func (p *Pool) startLocalAgents(ctx context.Context) error {
	for i := range p.o.agents {
		proc, err := p.startAgent(ctx, i)
		if err != nil {
			return err
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

// startAgent starts local agent i and a goroutine that replaces it when
// it dies (as a pool replaces a dead worker): its chunks go to the other
// agents after the ack wait, and the pool keeps its capacity, so a call
// never waits for agents that are gone.
func (p *Pool) startAgent(ctx context.Context, i int) (*process.Process, error) {
	proc := p.agentProcess(i)
	if err := proc.Start(ctx); err != nil {
		return nil, fmt.Errorf("cluster: starting a local agent: %w", err)
	}
	p.wg.Add(1)
	go p.supervise(i, proc)
	return proc, nil
}

// supervise replaces local agent i when its process exits while the pool
// runs, with a growing delay between failed starts.
func (p *Pool) supervise(i int, proc *process.Process) {
	defer p.wg.Done()
	delay := 100 * time.Millisecond
	for {
		err := proc.Join(context.Background())
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return
		}
		p.log.Warn("a local agent died; starting a replacement", zap.Int("pid", proc.Pid()), zap.Error(err))
		for {
			select {
			case <-p.life.Done():
				return
			case <-time.After(delay):
			}
			next, err := p.startReplacement(i)
			if err == nil {
				p.mu.Lock()
				if p.closed {
					p.mu.Unlock()
					next.Kill()
					next.Wait()
					next.Close()
					return
				}
				for k, old := range p.local {
					if old == proc {
						p.local[k] = next
					}
				}
				p.mu.Unlock()
				proc.Close()
				proc, delay = next, 100*time.Millisecond
				break
			}
			p.log.Warn("cannot start a replacement agent", zap.Error(err))
			delay = min(2*delay, 5*time.Second)
		}
	}
}

// startReplacement starts agent i's process without a supervisor of its
// own (the caller supervises it).
func (p *Pool) startReplacement(i int) (*process.Process, error) {
	proc := p.agentProcess(i)
	ctx, cancel := context.WithTimeout(p.life, 30*time.Second)
	defer cancel()
	return proc, proc.Start(ctx)
}

// agentProcess is local agent i's process, not started. Its log level
// follows the pool's logger.
func (p *Pool) agentProcess(i int) *process.Process {
	level := zapcore.WarnLevel
	for _, l := range []zapcore.Level{zapcore.DebugLevel, zapcore.InfoLevel} {
		if p.log.Core().Enabled(l) {
			level = l
			break
		}
	}
	proc := localAgent.Process(p.url, p.o.agentWorkers, int(level), p.o.creds)
	proc.Name = fmt.Sprintf("ClusterAgent-%d", i+1)
	proc.Logger = p.log
	proc.TermGrace = 5 * time.Second
	return proc
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
