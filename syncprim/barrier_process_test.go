// SPDX-License-Identifier: Apache-2.0

package syncprim

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/process"
	"github.com/multiproc/multiproc/shm"
)

var (
	// waitBarrier is a party in a child process.
	waitBarrier = process.Register("syncprim.test.barrier.wait", func(ctx context.Context, b *Barrier, v *shm.Value[int64]) error {
		actionValue = v
		_, err := b.Wait(ctx)
		return err
	})
	// actionValue is where recordPid writes (in the child).
	actionValue *shm.Value[int64]
	// recordPid is a registered action: it records the pid of the
	// process that runs it.
	recordPid = RegisterBarrierAction("syncprim.test.recordpid", func() error {
		if actionValue == nil {
			return errors.New("no value in this process")
		}
		actionValue.Store(int64(os.Getpid()))
		return nil
	})
)

// TestBarrierPartyDies: a party in a child process waits; it is
// SIGKILLed while another party waits, which then returns
// ErrBrokenBarrier at once (its context would have lasted a minute)
// instead of waiting forever. After Reset, the barrier works again.
func TestBarrierPartyDies(t *testing.T) {
	// Killed at once (the waiter's first liveness check finds it), or
	// after the waiter has armed its exit watches (the pidfd wakes it).
	for _, after := range []time.Duration{0, 100 * time.Millisecond} {
		t.Run(after.String(), func(t *testing.T) { testBarrierPartyDies(t, after) })
	}
}

func testBarrierPartyDies(t *testing.T, after time.Duration) {
	mptest.CheckChildren(t)
	b, err := NewBarrier(3)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v, err := shm.NewValue[int64](0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	p := waitBarrier.Process(b, v)
	if err := p.Start(bg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, time.Minute)
	defer cancel()
	res := make(chan error, 1)
	go func() {
		_, err := b.Wait(ctx)
		res <- err
	}()
	if err := b.awaitWaiting(ctx, 2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(after) // not a pass condition: either way the party must notice
	start := time.Now()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	p.Wait()
	err = <-res
	if !errors.Is(err, ErrBrokenBarrier) || ctx.Err() != nil {
		t.Fatalf("the waiting party got %v (ctx %v), want ErrBrokenBarrier", err, ctx.Err())
	}
	t.Logf("the waiting party returned %v after the kill", time.Since(start))
	if !b.Broken() {
		t.Fatal("the barrier is not broken")
	}
	if _, err := b.Wait(ctx); !errors.Is(err, ErrBrokenBarrier) {
		t.Fatalf("Wait on the broken barrier: %v", err)
	}
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = b.Wait(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("a pass after Reset: %v", err)
	}
}

// TestBarrierRegisteredAction: the action registered by name runs in
// the child that arrives last, which never called SetAction.
func TestBarrierRegisteredAction(t *testing.T) {
	mptest.CheckChildren(t)
	b, err := NewBarrier(2, RegisteredAction(recordPid))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v, err := shm.NewValue[int64](0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx, cancel := context.WithTimeout(bg, time.Minute)
	defer cancel()
	res := make(chan error, 1)
	go func() {
		_, err := b.Wait(ctx)
		res <- err
	}()
	if err := b.awaitWaiting(ctx, 1); err != nil {
		t.Fatal(err)
	}
	p := waitBarrier.Process(b, v)
	if err := p.Start(bg); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("the child: %v", err)
	}
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if got := v.Load(); got != int64(p.Pid()) {
		t.Fatalf("the action ran in %d, want the child %d", got, p.Pid())
	}
	if _, err := NewBarrier(2, RegisteredAction(BarrierAction{"syncprim.test.unknown"})); err == nil {
		t.Fatal("NewBarrier with an unregistered action: no error")
	}
}
