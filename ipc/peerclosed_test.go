// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"testing"
)

// PeerClosed sees the peer's close while its frames are still unread, on
// a pipe pair and on a socketpair, and reads nothing.
func TestPeerClosed(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{{"pipe", nil}, {"socketpair", []Option{Socketpair()}}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			a, b := mustPipe(t, true, tc.opts...)
			if err := b.SendBytes(ctx, []byte("unread")); err != nil {
				t.Fatal(err)
			}
			if a.PeerClosed() {
				t.Fatal("PeerClosed before the peer closed")
			}
			b.Close()
			if !a.PeerClosed() {
				t.Fatal("PeerClosed = false after the peer closed")
			}
			if got, err := a.RecvBytes(ctx); err != nil || string(got) != "unread" {
				t.Fatalf("RecvBytes after PeerClosed = %q, %v; want the unread frame", got, err)
			}
		})
	}
}
