// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Status is what a cluster's servers hold about its pools (ReadStatus;
// mp cluster status).
type Status struct {
	// The task stream: chunks queued and not yet acknowledged, their
	// bytes, and its replicas (0: no stream yet).
	Messages, Bytes uint64
	Replicas        int
	// Builds: each build's agents' consumer.
	Builds []BuildStatus
	// Callers and Agents alive (their status entries).
	Callers []CallerInfo
	Agents  []AgentInfo
	// Mismatched lists the agents of a build that no live caller runs:
	// they receive nothing (deploy the same binary everywhere).
	Mismatched []AgentInfo
}

// BuildStatus is one build's consumer: the chunks waiting for its agents,
// those held by an agent and not yet acknowledged, and the redeliveries
// (chunks delivered again after an agent vanished, or handed back).
type BuildStatus struct {
	Build                      string
	Pending, Held, Redelivered uint64
}

// CallerInfo is a caller's status entry.
type CallerInfo struct {
	ID    string `json:"-"`
	Host  string `json:"host"`
	Pid   int    `json:"pid"`
	Build string `json:"build"`
}

// ReadStatus connects to the cluster at url with creds and reads its
// status.
func ReadStatus(ctx context.Context, url string, creds Credentials) (*Status, error) {
	opts, err := connectOptions("multiproc-cluster-status", creds, func(error) {})
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connecting to %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	st := &Status{}
	stream, err := js.Stream(ctx, streamName)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return st, nil
	case err != nil:
		return nil, fmt.Errorf("cluster: the task stream: %w", err)
	}
	si := stream.CachedInfo()
	st.Messages, st.Bytes, st.Replicas = si.State.Msgs, si.State.Bytes, si.Config.Replicas
	for name := range stream.ConsumerNames(ctx).Name() {
		build, ok := strings.CutPrefix(name, "agents_")
		if !ok {
			continue
		}
		c, err := stream.Consumer(ctx, name)
		if err != nil {
			continue // removed meanwhile
		}
		ci := c.CachedInfo()
		st.Builds = append(st.Builds, BuildStatus{Build: build, Pending: ci.NumPending,
			Held: uint64(ci.NumAckPending), Redelivered: uint64(ci.NumRedelivered)})
	}
	kv, err := js.KeyValue(ctx, statusBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: the status bucket: %w", err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: the status bucket: %w", err)
	}
	for key := range keys.Keys() {
		kind, _, id, ok := nsOfKey(key)
		if !ok {
			continue
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue // expired meanwhile
		}
		switch kind {
		case "caller":
			var c CallerInfo
			if json.Unmarshal(e.Value(), &c) == nil {
				c.ID = id
				st.Callers = append(st.Callers, c)
			}
		case "agent":
			var a AgentInfo
			if json.Unmarshal(e.Value(), &a) == nil {
				st.Agents = append(st.Agents, a)
			}
		}
	}
	builds := map[string]bool{}
	for _, c := range st.Callers {
		builds[c.Build] = true
	}
	for i := range st.Agents {
		a := &st.Agents[i]
		a.Match = builds[a.Build]
		if len(st.Callers) > 0 && !a.Match {
			st.Mismatched = append(st.Mismatched, *a)
		}
	}
	slices.SortFunc(st.Agents, func(a, b AgentInfo) int { return strings.Compare(a.Host+a.ID, b.Host+b.ID) })
	return st, nil
}
