// SPDX-License-Identifier: Apache-2.0

// Remotemanager is Python's "Using a remote manager" recipe: a server
// publishes a queue under the name "jobs"; a producer and a consumer,
// separate programs on any hosts, reach that same queue with the server's
// address and authkey alone.
//
//	remotemanager server   -addr :50000
//	remotemanager consumer -addr server:50000
//	remotemanager producer -addr server:50000 wash dry fold
//
// The authkey is $AUTHKEY ("abracadabra", the recipe's, when unset).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/multiproc/multiproc/manager"
)

// stop is the job that tells the consumer to finish.
const stop = ""

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: remotemanager server|producer|consumer [-addr host:port] [jobs...]")
		os.Exit(2)
	}
	role := os.Args[1]
	fs := flag.NewFlagSet(role, flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:50000", "the server's tcp address")
	fs.Parse(os.Args[2:])
	key := []byte(os.Getenv("AUTHKEY"))
	if len(key) == 0 {
		key = []byte("abracadabra")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	var err error
	switch role {
	case "server":
		err = serve(ctx, *addr, key, func(addr string) { fmt.Println("serving on", addr) })
	case "producer":
		err = produce(ctx, *addr, key, fs.Args())
	case "consumer":
		err = consume(ctx, *addr, key, os.Stdout)
	default:
		err = fmt.Errorf("unknown role %q: want server, producer or consumer", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// serve publishes a queue as "jobs" and serves it until ctx ends; ready
// gets the address it listens on.
func serve(ctx context.Context, addr string, key []byte, ready func(addr string)) error {
	srv := manager.NewServer()
	defer srv.Close()
	// register('get_queue', callable=lambda: queue)
	if err := srv.PublishNew(ctx, "jobs", "Queue", 0); err != nil {
		return err
	}
	l, err := manager.Listen("tcp", addr, manager.Authkey(key))
	if err != nil {
		return err
	}
	ready(l.Addr().String())
	err = srv.Serve(ctx, l)
	if errors.Is(err, context.Canceled) || errors.Is(err, manager.ErrClosed) {
		return nil
	}
	return err
}

// produce puts jobs on the queue named "jobs", then the stop job.
func produce(ctx context.Context, addr string, key []byte, jobs []string) error {
	c, err := manager.Connect(ctx, "tcp", addr, manager.Authkey(key))
	if err != nil {
		return err
	}
	defer c.Close()
	// m.get_queue()
	q, err := manager.Lookup[*manager.Queue[string]](ctx, c, "jobs")
	if err != nil {
		return err
	}
	for _, j := range append(jobs, stop) {
		if err := q.Put(ctx, j); err != nil {
			return err
		}
	}
	return nil
}

// consume takes jobs from the queue named "jobs" until the stop job.
func consume(ctx context.Context, addr string, key []byte, w io.Writer) error {
	c, err := manager.Connect(ctx, "tcp", addr, manager.Authkey(key))
	if err != nil {
		return err
	}
	defer c.Close()
	q, err := manager.Lookup[*manager.Queue[string]](ctx, c, "jobs")
	if err != nil {
		return err
	}
	for {
		j, err := q.Get(ctx)
		if err != nil {
			return err
		}
		if j == stop {
			return nil
		}
		fmt.Fprintln(w, "done:", j)
	}
}
