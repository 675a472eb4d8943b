// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/manager"
)

// Issue 14 item 1: connections that never finish the handshake (silent
// ones, and ones that send one byte and stop) do not lock an honest
// client out of a manager server, with ipc's handshake timeout left at its
// default: it connects within a context shorter than that timeout (so it
// did not wait for any silent peer's handshake to end) and uses a Dict.
// Before the fix, 8 silent connections delayed Connect by 19.8 s and 24
// made it fail.
func TestSilentConnectionsDoNotLockOut(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		for _, tc := range []struct{ silent, oneByte int }{{8, 0}, {24, 0}, {200, 200}} {
			t.Run(fmt.Sprintf("%s/%d+%d", network, tc.silent, tc.oneByte), func(t *testing.T) {
				mptestFDs(t)
				ts := startServer(t, network)
				var attackers []net.Conn
				defer func() {
					for _, c := range attackers {
						c.Close()
					}
				}()
				for i := range tc.silent + tc.oneByte {
					c, err := net.Dial(network, ts.addr)
					if err != nil {
						t.Fatalf("connection %d: %v", i, err)
					}
					if i >= tc.silent {
						c.Write([]byte{0})
					}
					attackers = append(attackers, c)
				}
				ctx, cancel := context.WithTimeout(context.Background(), ipc.DefaultHandshakeTimeout/2)
				defer cancel()
				start := time.Now()
				c, err := manager.Connect(ctx, network, ts.addr, manager.Authkey(ts.key))
				if err != nil {
					t.Fatalf("Connect with %d silent and %d one-byte connections open: %v", tc.silent, tc.oneByte, err)
				}
				defer c.Close()
				d, err := manager.NewDict[string, int](ctx, c)
				if err != nil {
					t.Fatal(err)
				}
				if err := d.Set(ctx, "k", 7); err != nil {
					t.Fatal(err)
				}
				if v, err := d.Get(ctx, "k"); err != nil || v != 7 {
					t.Fatalf("Get = %v, %v; want 7", v, err)
				}
				t.Logf("%s: %d silent + %d one-byte connections open: Connect and a Dict round trip took %v",
					network, tc.silent, tc.oneByte, time.Since(start))
			})
		}
	}
}
