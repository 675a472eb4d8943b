// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

const otherBuild = "0000deadbeef"

// An agent of another build (here: this binary pretending to be another)
// never receives this program's tasks, and is visible: the caller logs
// it and lists it with Match false, and the agent reports the callers'
// build in its status entry.
func TestMismatchedAgentIsVisible(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	p := newPool(t, Agents(1), Logger(zap.New(core)))
	cmd := mptest.HelperCmd(t, "other-build-agent", p.URL())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var other *AgentInfo
		for _, a := range p.Agents() {
			if !a.Match {
				other = &a
			}
		}
		if other != nil && slices.Contains(other.OtherBuilds, p.ns) {
			if other.Build == p.ns || other.Done != 0 {
				t.Fatalf("mismatched agent %+v", other)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no mismatched agent reported: %+v", p.Agents())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if logs.FilterMessageSnippet("another build").Len() == 0 {
		t.Error("the caller did not log the agent of another build")
	}
	// ReadStatus (mp cluster status) lists it as mismatched, and the
	// local agent as matching.
	st, err := ReadStatus(context.Background(), p.URL(), Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Agents) != 2 || len(st.Mismatched) != 1 || st.Mismatched[0].Build != otherBuild+"_"+runtime.GOARCH || len(st.Callers) != 1 {
		t.Errorf("ReadStatus: agents %+v, mismatched %+v, callers %+v", st.Agents, st.Mismatched, st.Callers)
	}
	for _, a := range st.Agents {
		if a.Match != (a.Build == p.ns) {
			t.Errorf("ReadStatus: agent %+v has Match %v", a, a.Match)
		}
	}
	if v, err := square.Apply(context.Background(), p, 4); err != nil || v != 16 {
		t.Fatalf("Apply = %d, %v", v, err)
	}
}

var _ = mptest.RegisterHelper("other-build-agent", func() {
	namespace = func() string { return otherBuild + "_" + runtime.GOARCH }
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := runAgent(ctx, agentConfig{URL: mptest.HelperArgs()[0], Workers: 1}, zap.NewNop()); err != nil {
		os.Exit(1)
	}
})

// An agent stops a local pool with options other than the defaults once
// no chunk used it for a while: callers' option combinations do not pile
// up worker processes.
func TestIdleLocalPoolStopped(t *testing.T) {
	p := newPool(t, Agents(0), TaskTimeout(time.Minute))
	cmd := mptest.HelperCmd(t, "short-idle-agent", p.URL())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	waitWorkers(t, p, 1)
	// The default pool's worker and the TaskTimeout pool's worker, while
	// a task the test holds runs on the latter (counted while it runs: a
	// count after the task returned would race the idle bound); then,
	// once it returned, the latter is stopped.
	open := tmpFile(t, "open")
	f := held.Submit(context.Background(), p, open)
	mptest.WaitFile(t, open+".running")
	kids := func() int { return len(childrenOf(cmd.Process.Pid)) }
	if n := kids(); n != 2 {
		os.WriteFile(open, nil, 0o600)
		t.Fatalf("the agent has %d worker processes while a task runs, want 2", n)
	}
	mptest.OpenGate(t, open)
	if _, err := f.Get(context.Background()); err != nil {
		t.Fatalf("the held task: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for kids() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the idle pool's worker is still running (%d workers)", kids())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var _ = mptest.RegisterHelper("short-idle-agent", func() {
	idlePool = 500 * time.Millisecond
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := runAgent(ctx, agentConfig{URL: mptest.HelperArgs()[0], Workers: 1}, zap.NewNop()); err != nil {
		os.Exit(1)
	}
})

// childrenOf lists the live children of pid.
func childrenOf(pid int) []int {
	var kids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[0] != "Z" && f[1] == strconv.Itoa(pid) {
			k, _ := strconv.Atoi(e.Name())
			kids = append(kids, k)
		}
	}
	return kids
}
