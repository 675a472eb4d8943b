// SPDX-License-Identifier: Apache-2.0

package process_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/process"
)

var errQuota = remote.Register(errors.New("proctest: over quota"))

type limitError struct{ Limit int }

func (e *limitError) Error() string { return fmt.Sprintf("limit %d", e.Limit) }

func init() { remote.RegisterType[*limitError]() }

var fnRemoteErr = process.Register("process.test.remoteerr", func(ctx context.Context, typed bool) error {
	if typed {
		return fmt.Errorf("outer: %w", &limitError{Limit: 3})
	}
	return fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", errQuota))
})

// A child's registered errors keep their identity in the parent's
// *ExitError.
func TestExitErrorIdentity(t *testing.T) {
	for _, typed := range []bool{false, true} {
		p := fnRemoteErr.Process(typed)
		if err := p.Start(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		err := p.Join(ctxT(t))
		var ee *process.ExitError
		if !errors.As(err, &ee) || ee.Code != 1 {
			t.Fatalf("typed=%v: Wait = %v, want an *ExitError with code 1", typed, err)
		}
		if typed {
			var le *limitError
			if !errors.As(err, &le) || le.Limit != 3 {
				t.Errorf("errors.As(*limitError) gave %+v from %v", le, err)
			}
			continue
		}
		if !errors.Is(err, errQuota) || ee.Message != "outer: inner: proctest: over quota" {
			t.Errorf("errors.Is(err, errQuota) = %v; Message %q", errors.Is(err, errQuota), ee.Message)
		}
		p.Close()
	}
}
