// SPDX-License-Identifier: Apache-2.0

package pool_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/pool"
)

var (
	errShelfEmpty = remote.Register(errors.New("pooltest: shelf is empty"))
	errNotShared  = errors.New("pooltest: unregistered")
)

type shortError struct {
	Want, Have int
}

func (e *shortError) Error() string { return fmt.Sprintf("short by %d", e.Want-e.Have) }

func init() { remote.RegisterType[*shortError]() }

var failIdentity = pool.Register("test.remoteerr", func(ctx context.Context, x int) (int, error) {
	switch x {
	case 0:
		return 0, fmt.Errorf("a: %w", fmt.Errorf("b: %w", fmt.Errorf("c: %w", errShelfEmpty)))
	case 1:
		return 0, fmt.Errorf("checking: %w", &shortError{Want: 9, Have: 4})
	default:
		return 0, fmt.Errorf("x: %w", errNotShared)
	}
})

// A task's registered errors keep their identity in the caller; the
// remote text and the RemoteError's details stay.
func TestRemoteErrorIdentity(t *testing.T) {
	p := newPool(t, pool.Workers(1))
	ctx := context.Background()

	_, err := failIdentity.Apply(ctx, p, 0)
	var re *pool.RemoteError
	if !errors.Is(err, errShelfEmpty) || !errors.As(err, &re) {
		t.Fatalf("wrapped sentinel: errors.Is = %v, err = %v", errors.Is(err, errShelfEmpty), err)
	}
	if re.Message != "a: b: c: pooltest: shelf is empty" || re.Pid == 0 || re.Task != "test.remoteerr" {
		t.Errorf("RemoteError = %+v", re)
	}

	_, err = failIdentity.Apply(ctx, p, 1)
	var se *shortError
	if !errors.As(err, &se) || se.Want != 9 || se.Have != 4 {
		t.Fatalf("typed error: errors.As gave %+v from %v", se, err)
	}

	_, err = failIdentity.Apply(ctx, p, 2)
	if errors.Is(err, errNotShared) || !errors.As(err, &re) || re.Message != "x: pooltest: unregistered" {
		t.Fatalf("unregistered error: %v", err)
	}
}
