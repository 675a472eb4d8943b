// SPDX-License-Identifier: Apache-2.0

package queue_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/queue"
)

// Functions that child processes run are registered at package level, so
// that the re-executed binary has them too.
var (
	producer = process.Register("queue.example.producer", func(ctx context.Context, q *queue.Queue[string], words []string) error {
		defer q.Close()
		for _, w := range words {
			if err := q.Put(ctx, w); err != nil {
				return err
			}
		}
		return nil
	})

	worker = process.Register("queue.example.worker", func(ctx context.Context, jobs *queue.JoinableQueue[string], results *queue.Queue[string]) error {
		defer jobs.Close()
		defer results.Close()
		for {
			w, err := jobs.Get(ctx)
			if err != nil {
				return err
			}
			if w == "" { // the sentinel: no more work
				return jobs.TaskDone()
			}
			if err := results.Put(ctx, strings.ToUpper(w)); err != nil {
				return err
			}
			if err := jobs.TaskDone(); err != nil {
				return err
			}
		}
	})
)

// A producer process puts items; this process gets them. The producer may
// exit as soon as its last Put returns: its items are already in the
// queue (there is no feeder thread to wait for).
func Example() {
	ctx := context.Background()
	q, err := queue.New[string](queue.MaxSize(2))
	if err != nil {
		panic(err)
	}
	defer q.Close()

	p := producer.Process(q, []string{"spam", "ham", "eggs"})
	if err := p.Start(ctx); err != nil {
		panic(err)
	}
	for range 3 {
		w, err := q.Get(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Println(w)
	}
	if err := p.Join(ctx); err != nil {
		panic(err)
	}
	p.Close()
	// Output:
	// spam
	// ham
	// eggs
}

// Worker processes take jobs from a JoinableQueue and report each done;
// Join waits until every job put has been done.
func ExampleJoinableQueue() {
	ctx := context.Background()
	jobs, err := queue.NewJoinable[string]()
	if err != nil {
		panic(err)
	}
	defer jobs.Close()
	results, err := queue.New[string]()
	if err != nil {
		panic(err)
	}
	defer results.Close()

	var workers []*process.Process
	for range 2 {
		p := worker.Process(jobs, results)
		if err := p.Start(ctx); err != nil {
			panic(err)
		}
		workers = append(workers, p)
	}
	for _, w := range []string{"a", "b", "c", "d"} {
		jobs.Put(ctx, w)
	}
	if err := jobs.Join(ctx); err != nil { // every job done
		panic(err)
	}
	fmt.Println("results:", results.Len())
	for range workers {
		jobs.Put(ctx, "") // one sentinel per worker
	}
	for _, p := range workers {
		p.Join(ctx)
		p.Close()
	}
	var got []string
	for !results.Empty() {
		r, _ := results.Get(ctx)
		got = append(got, r)
	}
	slices.Sort(got) // workers run in parallel: any order
	fmt.Println(got)
	// Output:
	// results: 4
	// [A B C D]
}

// Timeouts are context deadlines; TryPut and TryGet never wait.
func ExampleQueue_Put_timeout() {
	ctx := context.Background()
	q, _ := queue.New[int](queue.MaxSize(1))
	defer q.Close()

	fmt.Println(q.TryPut(1))
	fmt.Println(q.TryPut(2))
	tctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	err := q.Put(tctx, 2)
	fmt.Println(errors.Is(err, queue.ErrFull), errors.Is(err, context.DeadlineExceeded))
	fmt.Println(q.Len(), q.Full())

	v, _ := q.TryGet()
	_, err = q.TryGet()
	fmt.Println(v, err)
	// Output:
	// <nil>
	// queue: full
	// true true
	// 1 true
	// 1 queue: empty
}

// A consumer of large []byte items reuses one buffer: GetBytes copies
// each item into it (one copy out of shared memory, no allocation) and
// returns the buffer's slice of that length. The item is valid until the
// buffer is passed to GetBytes again.
func ExampleGetBytes() {
	ctx := context.Background()
	q, _ := queue.New[[]byte]()
	defer q.Close()
	for i := range 3 {
		q.Put(ctx, []byte(strings.Repeat(string(rune('a'+i)), 1<<16)))
	}
	buf := make([]byte, 0, 1<<20)
	for range 3 {
		var err error
		if buf, err = queue.GetBytes(ctx, q, buf); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(len(buf), string(buf[:3]))
	}
	// Output:
	// 65536 aaa
	// 65536 bbb
	// 65536 ccc
}
