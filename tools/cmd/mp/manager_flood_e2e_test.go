// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/manager"
)

// testManagerServeFlood: mp manager serve, a real process on TCP, keeps
// serving honest clients while 200 silent connections and 200 that send
// one byte and stop are open (issue 14 item 1). The honest client connects
// within half of ipc's default handshake timeout, which the server keeps,
// so it never waited for a silent peer's handshake to time out.
func testManagerServeFlood(t *testing.T, bin string) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	key := []byte("flood test key")
	if err := os.WriteFile(keyFile, append(key, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	// Port 0 picks a free port; the first line says which.
	cmd, lines, stdout := serve(t, bin, "--addr", "127.0.0.1:0", "--authkey-file", keyFile)
	var addr string
	if _, err := fmt.Sscanf(lines[0], "manager serving on tcp %s", &addr); err != nil {
		t.Fatalf("first line %q: %v", lines[0], err)
	}
	var attackers []net.Conn
	defer func() {
		for _, c := range attackers {
			c.Close()
		}
	}()
	for i := range 400 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if i%2 == 1 {
			c.Write([]byte{0})
		}
		attackers = append(attackers, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ipc.DefaultHandshakeTimeout/2)
	defer cancel()
	c, err := manager.Connect(ctx, "tcp", addr, manager.Authkey(key))
	if err != nil {
		t.Fatalf("Connect with 400 stalled connections open: %v", err)
	}
	defer c.Close()
	d, err := manager.NewDict[string, int](ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "answer", 42); err != nil {
		t.Fatal(err)
	}
	if v, err := d.Get(ctx, "answer"); err != nil || v != 42 {
		t.Fatalf("Dict.Get = %v, %v; want 42", v, err)
	}
	c.Close()
	stopServe(t, cmd, stdout)
}
