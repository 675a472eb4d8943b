// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/manager"
)

// namedClient runs in a helper process, a separate program that knows
// only the server's address and authkey: as "producer" it puts 1..n and
// then 0 on the queue published as "jobs"; as "consumer" it gets until 0
// and prints the sum.
var _ = mptest.RegisterHelper("mp.named.client", func() {
	args := mptest.HelperArgs()
	role, addr, keyFile := args[0], args[1], args[2]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
		os.Exit(1)
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		fail(err)
	}
	c, err := manager.Connect(ctx, "tcp", addr, manager.Authkey([]byte(strings.TrimSuffix(string(key), "\n"))))
	if err != nil {
		fail(err)
	}
	defer c.Close()
	jobs, err := manager.Lookup[*manager.Queue[int]](ctx, c, "jobs")
	if err != nil {
		fail(err)
	}
	switch role {
	case "producer":
		for i := 1; i <= 100; i++ {
			if err := jobs.Put(ctx, i); err != nil {
				fail(err)
			}
		}
		if err := jobs.Put(ctx, 0); err != nil {
			fail(err)
		}
	case "consumer":
		sum := 0
		for {
			v, err := jobs.Get(ctx)
			if err != nil {
				fail(err)
			}
			if v == 0 {
				break
			}
			sum += v
		}
		fmt.Println(sum)
	}
})

// testManagerServePublish: Python's remote-manager recipe with the mp
// command as the server: --publish jobs=Queue, then a producer and a
// consumer, separate processes, share the queue by its name over TCP with
// an authkey.
func testManagerServePublish(t *testing.T, bin string) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("abracadabra\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, lines, stdout := serve(t, bin, "--addr", "127.0.0.1:0", "--authkey-file", keyFile, "--publish", "jobs=Queue", "--publish", "slots=Semaphore:3")
	addr, ok := strings.CutPrefix(lines[0], "manager serving on tcp ")
	if !ok {
		t.Fatalf("first line %q", lines[0])
	}
	if lines[2] != "published jobs as Queue" || lines[3] != "published slots as Semaphore" {
		t.Errorf("lines %q, want the published names after the authkey", lines[2:4])
	}
	consumer := mptest.HelperCmd(t, "mp.named.client", "consumer", addr, keyFile)
	out, err := consumer.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Start(); err != nil {
		t.Fatal(err)
	}
	producer := mptest.HelperCmd(t, "mp.named.client", "producer", addr, keyFile)
	if err := producer.Run(); err != nil {
		t.Fatalf("producer: %v", err)
	}
	printed, err := io.ReadAll(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Wait(); err != nil {
		t.Fatalf("consumer: %v", err)
	}
	if got := strings.TrimSpace(string(printed)); got != strconv.Itoa(100*101/2) {
		t.Errorf("consumer's sum %q, want %d", got, 100*101/2)
	}
	// The semaphore was made with its argument.
	ctx := context.Background()
	c, err := manager.Connect(ctx, "tcp", addr, manager.Authkey([]byte("abracadabra")))
	if err != nil {
		t.Fatal(err)
	}
	sem, err := manager.Lookup[*manager.Semaphore](ctx, c, "slots")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := sem.Value(ctx); err != nil || v != 3 {
		t.Errorf("slots: %d, %v; want 3", v, err)
	}
	c.Close()
	stopServe(t, cmd, stdout)

	for _, tt := range []struct{ spec, want string }{
		{"jobs", "want NAME=TYPE"},
		{"=Queue", "want NAME=TYPE"},
		{"q=NoSuchType", "unknown type"},
		{"q=Queue:many", "is not an integer"},
	} {
		mpFails(t, bin, tt.want, "manager", "serve", "--addr", "127.0.0.1:0", "--authkey-file", keyFile, "--publish", tt.spec)
	}
}
