// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"errors"
	"testing"

	"github.com/multiproc/multiproc/manager"
)

func TestSmokePipe(t *testing.T) {
	_, c := pipeServer(t)
	ctx := ctxT(t)
	d, err := manager.NewDict[string, int](ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	v, err := d.Get(ctx, "a")
	if err != nil || v != 1 {
		t.Fatalf("Get = %v, %v", v, err)
	}
	_, err = d.Get(ctx, "zz")
	if !errors.Is(err, manager.ErrKeyNotFound) {
		t.Fatalf("Get(zz) = %v", err)
	}
	t.Log(err)
}

func TestSmokeUnix(t *testing.T) {
	ts := startServer(t, "unix")
	ctx := ctxT(t)
	l, err := manager.NewList[int](ctx, ts.client, 1, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, 4); err != nil {
		t.Fatal(err)
	}
	got, err := l.Copy(ctx)
	if err != nil || len(got) != 4 {
		t.Fatalf("%v %v", got, err)
	}
}
