// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/shm"
	"github.com/multiproc/multiproc/syncprim"
)

// Cube is registered at package level: worker processes (re-executions of
// this binary) find it by name.
var Cube = pool.Register("example.cube", func(ctx context.Context, x int) (int, error) {
	if x < 0 {
		return 0, errors.New("negative input")
	}
	return x * x * x, nil
})

func Example() {
	ctx := context.Background()
	p, err := pool.New(ctx, pool.Workers(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Terminate()
	cubes, err := Cube.Map(ctx, p, []int{1, 2, 3, 4})
	fmt.Println(cubes, err)
	// Output: [1 8 27 64] <nil>
}

func ExampleTask_Imap() {
	ctx := context.Background()
	p, _ := pool.New(ctx, pool.Workers(2))
	defer p.Terminate()
	// An endless input, read lazily; break stops it.
	naturals := func(yield func(int) bool) {
		for i := 0; yield(i); i++ {
		}
	}
	for c, err := range Cube.Imap(ctx, p, naturals) {
		if err != nil || c > 100 {
			break
		}
		fmt.Print(c, " ")
	}
	fmt.Println()
	// Output: 0 1 8 27 64
}

func ExampleTask_Submit() {
	ctx := context.Background()
	p, _ := pool.New(ctx, pool.Workers(2))
	defer p.Terminate()
	futures := make([]*pool.Future[int], 3)
	for i := range futures {
		futures[i] = Cube.Submit(ctx, p, i+5)
	}
	for _, f := range futures {
		v, err := f.Get(ctx)
		fmt.Println(v, err)
	}
	// Output:
	// 125 <nil>
	// 216 <nil>
	// 343 <nil>
}

func ExampleRemoteError() {
	ctx := context.Background()
	p, _ := pool.New(ctx, pool.Workers(1))
	defer p.Terminate()
	_, err := Cube.Map(ctx, p, []int{1, -2, 3})
	var re *pool.RemoteError
	if errors.As(err, &re) {
		fmt.Println(re.Index, re.Message)
	}
	// Output: 1 negative input
}

// Handling workers that die: tasks whose worker was killed fail with
// ErrWorkerDied (or are retried with pool.Retries); the pool goes on.
func ExampleWorkerDiedError() {
	ctx := context.Background()
	p, _ := pool.New(ctx, pool.Workers(2))
	defer p.Terminate()
	results, err := suicide.Map(ctx, p, []int{1, -1, 3}, pool.Chunksize(1))
	var de *pool.WorkerDiedError
	if errors.As(err, &de) {
		fmt.Println("worker killed by", de.Signal)
	}
	fmt.Println(results[0], results[2], errors.Is(err, pool.ErrWorkerDied))
	// Output:
	// worker killed by killed
	// 1 3 true
}

func ExampleNewThreadPool() {
	ctx := context.Background()
	p, _ := pool.NewThreadPool(ctx, pool.Workers(4))
	defer p.Terminate()
	var got []int
	for c, err := range Cube.ImapUnordered(ctx, p, slices.Values([]int{1, 2, 3})) {
		if err == nil {
			got = append(got, c)
		}
	}
	slices.Sort(got)
	fmt.Println(got)
	// Output: [1 8 27]
}

// Shared is what every worker gets from the Initializer (Python's
// initargs=(lock, value)): handles, attached in each worker.
type Shared struct {
	Lock  *syncprim.Lock
	Total *shm.Value[int64]
}

var (
	shared    Shared // in each worker, set by SetShared
	SetShared = pool.Register("example.setshared", func(ctx context.Context, s Shared) (struct{}, error) {
		shared = s
		return struct{}{}, nil
	})
	AddToTotal = pool.Register("example.addtototal", func(ctx context.Context, x int64) (struct{}, error) {
		if err := shared.Lock.Acquire(ctx); err != nil {
			return struct{}{}, err
		}
		defer shared.Lock.Release()
		shared.Total.Store(shared.Total.Load() + x)
		return struct{}{}, nil
	})
)

// Handles reach workers through the Initializer, and tasks use them from
// a package variable.
func ExampleInitializer() {
	ctx := context.Background()
	lock, _ := syncprim.NewLock()
	defer lock.Close()
	total, _ := shm.NewValue[int64](0)
	defer total.Close()
	p, err := pool.New(ctx, pool.Workers(2), pool.Initializer(SetShared, Shared{Lock: lock, Total: total}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Terminate()
	_, err = AddToTotal.Map(ctx, p, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	fmt.Println(total.Load(), err)
	// Output: 55 <nil>
}

// Volume is a task of three arguments: its input is an Args3.
var Volume = pool.Register3("example.volume", func(ctx context.Context, w, h, d int) (int, error) {
	return w * h * d, nil
})

// Starmap (and StarmapAsync) run a task of several arguments over a
// slice of ArgsN.
func ExampleStarmap() {
	ctx := context.Background()
	p, _ := pool.New(ctx, pool.Workers(2))
	defer p.Terminate()
	boxes := []pool.Args3[int, int, int]{{A: 1, B: 2, C: 3}, {A: 2, B: 2, C: 2}}
	vs, err := pool.Starmap(ctx, p, Volume, boxes)
	fmt.Println(vs, err)
	all, err := pool.StarmapAsync(ctx, p, Volume, boxes).Get(ctx)
	fmt.Println(all, err)
	// Output:
	// [6 8] <nil>
	// [6 8] <nil>
}

// AsCompleted yields futures as they complete (Python's as_completed).
func ExampleAsCompleted() {
	ctx := context.Background()
	p, _ := pool.New(ctx, pool.Workers(2))
	defer p.Terminate()
	var fs []*pool.Future[int]
	for _, x := range []int{1, 2, 3} {
		fs = append(fs, Cube.Submit(ctx, p, x))
	}
	sum := 0
	for f := range pool.AsCompleted(ctx, fs...) {
		c, _ := f.Get(ctx)
		sum += c
	}
	fmt.Println(sum, ctx.Err())
	// Output: 36 <nil>
}

// Cancel reports whether the task was still queued (it never runs) or a
// worker had it (its context is cancelled).
func ExampleFuture_Cancel() {
	ctx := context.Background()
	p, _ := pool.New(ctx, pool.Workers(1))
	defer p.Terminate()
	f := Cube.Submit(ctx, p, 3)
	_, _ = f.Get(ctx)
	fmt.Println(f.Cancel())
	// Output: not cancelled
}
