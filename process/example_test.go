// SPDX-License-Identifier: Apache-2.0

package process_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
)

// Functions run by children are registered at package level. (In a
// program, main calls process.Init() first; here TestMain does.)
var (
	hello = process.Register("example.hello", func(ctx context.Context, who string) {
		fmt.Printf("hello, %s, from %s\n", who, process.Current().Name)
	})
	squares = process.Register("example.squares", func(ctx context.Context, c *ipc.Conn) error {
		defer c.Close()
		for {
			var n int
			if err := c.Recv(ctx, &n); err != nil {
				return nil // the parent closed its end: done
			}
			if err := c.Send(ctx, n*n); err != nil {
				return err
			}
		}
	})
	exitWith = process.Register("example.exit", func(ctx context.Context, how string) error {
		switch how {
		case "error":
			return errors.New("something broke")
		case "code":
			return process.Exit(3)
		case "wait":
			<-ctx.Done() // until Terminate
			return ctx.Err()
		}
		return nil
	})
)

// Start a child and wait for it. Its stdout is the parent's.
func Example() {
	p := &process.Process{Func: hello, Args: []any{"world"}, Name: "greeter"}
	if err := p.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	if err := p.Wait(); err != nil {
		fmt.Println(err)
	}
	code, _ := p.ExitCode()
	fmt.Println("exit code", code)
	// Output:
	// hello, world, from greeter
	// exit code 0
}

// Pass one end of a Pipe to a child and talk to it over the other.
func ExampleProcess_pipe() {
	ctx := context.Background()
	parent, child, err := ipc.Pipe(true)
	if err != nil {
		fmt.Println(err)
		return
	}
	p := squares.Process(child)
	if err := p.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	child.Close() // the child has its own copy now
	for n := 1; n <= 3; n++ {
		var sq int
		if err := parent.Send(ctx, n); err != nil {
			fmt.Println(err)
		}
		if err := parent.Recv(ctx, &sq); err != nil {
			fmt.Println(err)
		}
		fmt.Println(n, "squared is", sq)
	}
	parent.Close() // EOF in the child: it returns
	fmt.Println("wait:", p.Wait())
	// Output:
	// 1 squared is 1
	// 2 squared is 4
	// 3 squared is 9
	// wait: <nil>
}

// Exit codes follow Python's convention.
func ExampleProcess_ExitCode() {
	ctx := context.Background()
	for _, how := range []string{"return", "error", "code", "wait"} {
		p := exitWith.Process(how)
		p.Stderr = os.Stdout
		if err := p.Start(ctx); err != nil {
			fmt.Println(err)
			return
		}
		if how == "wait" {
			p.Terminate() // SIGTERM: ctx is cancelled, the child dies of SIGTERM
		}
		err := p.Wait()
		code, _ := p.ExitCode()
		var ee *process.ExitError
		if errors.As(err, &ee) {
			fmt.Printf("%s: exit code %d, message %q\n", how, code, ee.Message)
		} else {
			fmt.Printf("%s: exit code %d\n", how, code)
		}
	}
	// Output:
	// return: exit code 0
	// error: exit code 1, message "something broke"
	// code: exit code 3, message ""
	// wait: exit code -15, message ""
}

// Asking for fork explains what to do instead.
func ExampleStartMethod() {
	_, err := process.StartMethod("fork")
	fmt.Println(errors.Is(err, process.ErrNoFork))
	s, _ := process.StartMethod("spawn")
	fmt.Println(s.Name())
	// Output:
	// true
	// spawn
}

// Two counts of CPUs, as Python 3.13 has two: CPUCount is what this
// process may use (its affinity mask, lowered by a cgroup CPU quota: size
// a pool by it), HostCPUCount what the machine has online
// (os.cpu_count).
func ExampleHostCPUCount() {
	workers := process.CPUCount()
	fmt.Println(workers >= 1, process.HostCPUCount() >= workers)
	// Output:
	// true true
}
