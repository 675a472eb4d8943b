// SPDX-License-Identifier: Apache-2.0

package process_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
)

// Functions of these shapes are called without reflection (Register1, and
// Register's functions of no argument): what they return, and their
// panics, reach the parent as any function's do.
var (
	fnTypedErr = process.Register1("test.invoke.err", func(ctx context.Context, s string) error {
		return fmt.Errorf("typed %s: %w", s, errQuota)
	})
	fnTypedPanic = process.Register1("test.invoke.panic", func(ctx context.Context, c *ipc.Conn) error {
		c.SendBytes(ctx, []byte("ran"))
		c.Close()
		panicInInvoke("typed panic")
		return nil
	})
	fnNoArgPanic = process.Register("test.invoke.noargpanic", func(ctx context.Context) { panicInInvoke("no-arg panic") })
	fnNoArgErr   = process.Register("test.invoke.noargerr", func(ctx context.Context) error { return errQuota })
)

func panicInInvoke(msg string) { panic(msg) }

func TestTypedCall(t *testing.T) {
	ctx := ctxT(t)
	p := fnTypedErr.Process("argument")
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	err := p.Wait()
	var ee *process.ExitError
	if !errors.As(err, &ee) || ee.Code != 1 || !errors.Is(err, errQuota) || ee.Message != "typed argument: proctest: over quota" {
		t.Fatalf("Register1 function's error: Wait = %v (%+v)", err, ee)
	}

	a, b, err := ipc.Pipe(false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p = fnTypedPanic.Process(b)
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if got, err := a.RecvBytes(ctx); err != nil || string(got) != "ran" {
		t.Fatalf("the handle argument: %q, %v", got, err)
	}
	err = p.Wait()
	if !errors.As(err, &ee) || !errors.Is(err, process.ErrPanicked) || ee.Message != "typed panic" || !strings.Contains(ee.Stack, "panicInInvoke") {
		t.Fatalf("Register1 function's panic: Wait = %v (%+v)", err, ee)
	}

	p = fnNoArgPanic.Process()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	err = p.Wait()
	if !errors.As(err, &ee) || !errors.Is(err, process.ErrPanicked) || ee.Message != "no-arg panic" {
		t.Fatalf("no-argument function's panic: Wait = %v (%+v)", err, ee)
	}

	p = fnNoArgErr.Process()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); !errors.Is(err, errQuota) {
		t.Fatalf("no-argument function's error: Wait = %v", err)
	}
}
