// SPDX-License-Identifier: Apache-2.0

package ipc_test

import (
	"context"
	"sync"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
)

// SendWait returns only once its frame is written: while another sender's
// write is stuck on a peer that does not read, SendWait waits too (Send
// would return with the frame merely queued); once the peer reads, both
// frames arrive and SendWait returns.
func TestBatcherSendWait(t *testing.T) {
	ctx := context.Background()
	a, b, err := ipc.Pipe(true, ipc.Socketpair())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	bt := ipc.NewBatcher(a)
	big := make([]byte, 8<<20) // more than the socket buffers hold
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := bt.Send(big); err != nil {
			t.Errorf("Send: %v", err)
		}
	})
	mptest.WaitBlocked(t, "ipc.(*Batcher).Send")
	// Send queues and returns while another write is in progress.
	if err := bt.Send([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- bt.SendWait([]byte("small")) }()
	mptest.WaitBlocked(t, "ipc.(*Batcher).SendWait")
	select {
	case err := <-waited:
		t.Fatalf("SendWait returned (%v) before its frame could be written", err)
	default:
	}
	for _, want := range []int{len(big), len("queued"), len("small")} {
		got, err := b.RecvBytes(ctx)
		if err != nil || len(got) != want {
			t.Fatalf("received %d bytes, %v; want %d", len(got), err, want)
		}
	}
	if err := <-waited; err != nil {
		t.Fatalf("SendWait: %v", err)
	}
	wg.Wait()
}
