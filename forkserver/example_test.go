// SPDX-License-Identifier: Apache-2.0

package forkserver_test

import (
	"context"
	"fmt"

	"github.com/multiproc/multiproc/forkserver"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
)

// Registered at package level, as every function a child may run.
var (
	square = process.Register("example.square", func(ctx context.Context, n int, out *ipc.Conn) error {
		defer out.Close()
		return out.Send(ctx, n*n)
	})
	sleeper = process.Register("example.sleeper", func(ctx context.Context) error {
		<-ctx.Done() // until terminated
		return ctx.Err()
	})
)

// A Process started through a forkserver: only Process.Starter changes.
func Example() {
	ctx := context.Background()
	fs, err := forkserver.New(forkserver.Size(2))
	if err != nil {
		panic(err)
	}
	defer fs.Close()

	a, b, err := ipc.Pipe(true)
	if err != nil {
		panic(err)
	}
	defer a.Close()
	p := square.Process(7, b) // b travels to the child by SCM_RIGHTS
	p.Starter = fs
	if err := p.Start(ctx); err != nil {
		panic(err)
	}
	b.Close()
	var got int
	if err := a.Recv(ctx, &got); err != nil {
		panic(err)
	}
	if err := p.Join(ctx); err != nil {
		panic(err)
	}
	fmt.Println(got, p.StartMethodName())
	// Output: 49 forkserver
}

// Warm fills the warm set ahead of time (CPython's ensure_running); a
// forkserver child is terminated, killed and waited for like any other.
func ExampleStarter_Warm() {
	ctx := context.Background()
	fs, err := forkserver.New(forkserver.Size(1))
	if err != nil {
		panic(err)
	}
	defer fs.Close()
	if err := fs.Warm(ctx); err != nil {
		panic(err)
	}

	p := sleeper.Process()
	p.Starter = fs
	if err := p.Start(ctx); err != nil {
		panic(err)
	}
	defer p.Close()
	p.Terminate()
	err = p.Join(ctx)
	code, _ := p.ExitCode()
	fmt.Println(code, err != nil)
	// Output: -15 true
}

// A pool, or anything else that takes a process.Starter, can use one.
func ExampleStarter_Name() {
	var s process.Starter
	fs, err := forkserver.New()
	if err != nil {
		panic(err)
	}
	defer fs.Close()
	s = fs
	fmt.Println(s.Name())
	// Output: forkserver
}
