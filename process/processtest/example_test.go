// SPDX-License-Identifier: Apache-2.0

package processtest_test

import (
	"context"
	"fmt"

	"github.com/multiproc/multiproc/process"
)

// A Method makes a new Starter each time it is asked: in each subtest
// of TestStarter, and in the children that start grandchildren. Here one
// starts a child; TestCountingStarter, in this package's tests, runs the
// whole suite with the same Method.
func ExampleMethod_New() {
	s, closeS, err := countingMethod.New()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer closeS() // closes s when it is an io.Closer
	p := square.Process(7)
	p.Starter = s
	if err := p.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	p.Wait()
	code, _ := p.ExitCode()
	fmt.Println(countingMethod.Name(), p.StartMethodName(), code)
	// Output: counting counting 49
}

var square = process.Register1("example.square", func(ctx context.Context, n int) error {
	return process.Exit(n * n)
})
