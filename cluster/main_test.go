// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/process"
)

func TestMain(m *testing.M) {
	process.Init()
	mptest.Main(m)
}

// Tasks the tests run; registered at package level so that agents and
// their workers (the re-executed test binary) have them too.
var (
	square = pool.Register("ctest.square", func(ctx context.Context, x int) (int, error) { return x * x, nil })
	fail   = pool.Register("ctest.fail", func(ctx context.Context, x int) (int, error) {
		if x%10 == 3 {
			return 0, fmt.Errorf("task %d: %w", x, errBoom)
		}
		return x, nil
	})
	// slow sleeps for d (or until its context ends) and returns d.
	slow = pool.Register("ctest.slow", func(ctx context.Context, d time.Duration) (time.Duration, error) {
		select {
		case <-time.After(d):
			return d, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	// held says it runs by creating path+".running", then waits until
	// path exists or its context ends: a task the test holds and
	// releases, with no timing in it.
	held = pool.Register("ctest.held", func(ctx context.Context, path string) (int, error) {
		return os.Getpid(), mptest.Hold(ctx, path)
	})
	// stubborn ignores its context.
	stubborn = pool.Register("ctest.stubborn", func(ctx context.Context, d time.Duration) (int, error) {
		time.Sleep(d)
		return os.Getpid(), nil
	})
	// suicide kills its own worker when x is negative.
	suicide = pool.Register("ctest.suicide", func(ctx context.Context, x int) (int, error) {
		if x < 0 {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return x, nil
	})
	// killAgent kills the agent that runs it (its worker's parent), with
	// the agent's workers: the chunk is redelivered until it is poison.
	killAgent = pool.Register("ctest.killagent", func(ctx context.Context, x int) (int, error) {
		syscall.Kill(os.Getppid(), syscall.SIGKILL)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	})
	// markCancel waits for its context to end, then creates the file it
	// was given.
	markCancel = pool.Register("ctest.markcancel", func(ctx context.Context, path string) (int, error) {
		select {
		case <-ctx.Done():
			os.WriteFile(path, []byte("cancelled"), 0o600)
			return 0, ctx.Err()
		case <-time.After(time.Minute):
			return 1, nil
		}
	})
	concat = pool.Register2("ctest.concat", func(ctx context.Context, a string, n int) (string, error) {
		return strings.Repeat(a, n), nil
	})
)

var errBoom = remote.Register(errors.New("ctest: boom"))

// newPool starts an embedded cluster pool with short timings and checks,
// at the end of the test, that it leaves no child, fd or store behind.
//
// The ack wait and the republish delay are short: when a loaded machine
// outruns them, a chunk runs twice and the duplicate result is dropped,
// which every test tolerates. The callers' TTL is not: a caller whose
// heartbeat is late by the TTL is declared dead, its chunks purged and
// its big payloads' objects removed, and its call fails (seen under
// -race with a 2s TTL: ErrPayloadLost in TestBigPayloadAgentKilled).
// Only the tests of a caller's death shorten it.
func newPool(t testing.TB, opts ...Option) *Pool {
	t.Helper()
	mptest.CheckChildren(t)
	mptest.CheckFDs(t)
	base := []Option{Agents(2), AckWait(time.Second), CallerTTL(15 * time.Second), RepublishAfter(3 * time.Second)}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := New(ctx, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dir := ""
		if p.emb != nil {
			dir = p.emb.dir
		}
		p.Close()
		if dir != "" {
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("store directory %s still there after Close (%v)", dir, err)
			}
		}
	})
	return p
}

func ints(n int) []int {
	v := make([]int, n)
	for i := range v {
		v[i] = i
	}
	return v
}

func tmpFile(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }
