// SPDX-License-Identifier: Apache-2.0

package ipc_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/multiproc/multiproc/ipc"
)

// Concurrent senders through a Batcher: every frame arrives once, whole,
// and each sender's frames in its order.
func TestBatcherConcurrentSenders(t *testing.T) {
	a, b, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	bt := ipc.NewBatcher(a)
	const senders, each = 8, 500
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				f := []byte(fmt.Sprintf("%d:%d", s, i))
				var err error
				if i%3 == 0 {
					err = bt.Enqueue(f)
				} else {
					err = bt.Send(f)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
			if err := bt.Flush(); err != nil {
				t.Error(err)
			}
		})
	}
	next := make([]int, senders)
	ctx := context.Background()
	for range senders * each {
		m, err := b.RecvBytes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var s, i int
		if _, err := fmt.Sscanf(string(m), "%d:%d", &s, &i); err != nil || i != next[s] {
			t.Fatalf("frame %q: sender %d expected item %d", m, s, next[s])
		}
		next[s]++
	}
	wg.Wait()
}

// After a failed write every call returns that error.
func TestBatcherBrokenConn(t *testing.T) {
	a, b, err := ipc.Pipe(true)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	a.Close()
	bt := ipc.NewBatcher(a)
	first := bt.Send([]byte("x"))
	if first == nil {
		t.Fatal("Send on a closed Conn succeeded")
	}
	if err := bt.Enqueue([]byte("y")); !errors.Is(err, first) {
		t.Errorf("Enqueue after a failure: %v, want %v", err, first)
	}
	if err := bt.Flush(); !errors.Is(err, first) {
		t.Errorf("Flush after a failure: %v, want %v", err, first)
	}
}
