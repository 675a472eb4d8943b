// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/multiproc/multiproc/pool"
	"go.uber.org/zap"
)

// An agent whose consumer is deleted behind its back (by an operator, or
// a server that lost it) creates it again and goes on, instead of pulling
// in a tight loop. The agent runs in this process, so that -race sees its
// bind rewrite what its other goroutines (status, purges, heartbeats)
// read.
func TestAgentRebindsWhenConsumerDeleted(t *testing.T) {
	p := newPool(t, Agents(0))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runAgent(actx, agentConfig{URL: p.URL(), Workers: 1}, zap.NewNop()) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("runAgent = %v", err)
		}
	}()
	want := make([]int, 200)
	for i := range want {
		want[i] = i * i
	}
	got, err := square.Map(ctx, p, ints(200), pool.Chunksize(1))
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Map = %v, %v", got, err)
	}
	for round := range 2 {
		if err := p.js.DeleteConsumer(ctx, streamName, consumerName(p.ns)); err != nil {
			t.Fatal(err)
		}
		// Long enough for the agent's status loop to run after it bound
		// again (every third of the 2s caller TTL).
		slept, err := slow.Map(ctx, p, slices.Repeat([]time.Duration{100 * time.Millisecond}, 10), pool.Chunksize(1))
		if err != nil || len(slept) != 10 {
			t.Fatalf("round %d: Map after the consumer was deleted = %v, %v", round, slept, err)
		}
		if _, err := p.js.Consumer(ctx, streamName, consumerName(p.ns)); err != nil {
			t.Fatalf("round %d: the agents' consumer was not created again: %v", round, err)
		}
	}
}
