// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
)

// The producer and the consumer run as separate processes, as in the
// recipe; they know only the address and the authkey.
var _ = mptest.RegisterHelper("remotemanager.role", func() {
	args := mptest.HelperArgs()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := []byte("abracadabra")
	var err error
	switch args[0] {
	case "producer":
		err = produce(ctx, args[1], key, args[2:])
	case "consumer":
		err = consume(ctx, args[1], key, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
})

func TestMain(m *testing.M) { mptest.Main(m) }

// TestRecipe: a server in this process, a consumer and a producer in two
// others, sharing the queue named "jobs" over TCP with the authkey.
func TestRecipe(t *testing.T) {
	mptest.CheckChildren(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sctx, stopServer := context.WithCancel(ctx)
	addrc := make(chan string, 1)
	served := make(chan error, 1)
	go func() {
		served <- serve(sctx, "127.0.0.1:0", []byte("abracadabra"), func(a string) { addrc <- a })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-served:
		t.Fatalf("server: %v", err)
	}
	consumer := mptest.HelperCmd(t, "remotemanager.role", "consumer", addr)
	out, err := consumer.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Start(); err != nil {
		t.Fatal(err)
	}
	producer := mptest.HelperCmd(t, "remotemanager.role", "producer", addr, "wash", "dry", "fold")
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
	if got, want := string(printed), "done: wash\ndone: dry\ndone: fold\n"; got != want {
		t.Fatalf("consumer printed %q, want %q", got, want)
	}
	stopServer()
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}
}
