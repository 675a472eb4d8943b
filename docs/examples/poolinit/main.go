// SPDX-License-Identifier: Apache-2.0

// Poolinit is Python's Pool(initializer=init, initargs=(lock, counts)),
// with a manager's proxies: every pool worker gets the proxies from the
// initializer, keeps them in a package variable, and its tasks update a
// dictionary held by the manager's server under the manager's lock.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/multiproc/multiproc/manager"
	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/process"
)

// Shared is the initializer's argument: handles (proxies) travel to each
// worker, attached there.
type Shared struct {
	Lock   *manager.Lock
	Counts *manager.Dict[string, int]
}

var (
	shared Shared // in each worker, set by setup

	setup = pool.Register("poolinit.setup", func(ctx context.Context, s Shared) (struct{}, error) {
		shared = s
		return struct{}{}, nil
	})

	// count adds one to the word's count, under the lock (a read and a
	// write: the lock keeps concurrent workers from losing updates).
	count = pool.Register("poolinit.count", func(ctx context.Context, word string) (struct{}, error) {
		if err := shared.Lock.Acquire(ctx); err != nil {
			return struct{}{}, err
		}
		defer shared.Lock.Release(ctx)
		n, err := shared.Counts.GetOr(ctx, word, 0)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, shared.Counts.Set(ctx, word, n+1)
	})
)

func main() {
	process.Init()
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer) error {
	m, err := manager.Start(ctx)
	if err != nil {
		return err
	}
	defer m.Shutdown(ctx)
	lock, err := manager.NewLock(ctx, m.Client)
	if err != nil {
		return err
	}
	counts, err := manager.NewDict[string, int](ctx, m.Client)
	if err != nil {
		return err
	}
	p, err := pool.New(ctx, pool.Workers(3), pool.Initializer(setup, Shared{Lock: lock, Counts: counts}),
		pool.MaxTasksPerChild(4)) // recycled workers get the proxies too
	if err != nil {
		return err
	}
	defer p.Terminate()
	words := []string{"a", "b", "a", "c", "a", "b", "a", "c", "a", "b", "a", "c"}
	if _, err := count.Map(ctx, p, words, pool.Chunksize(1)); err != nil {
		return err
	}
	for _, k := range []string{"a", "b", "c"} {
		n, err := counts.Get(ctx, k)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s=%d ", k, n)
	}
	fmt.Fprintln(w)
	return nil
}
