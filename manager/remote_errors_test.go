// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/multiproc/multiproc/ipc/remote"
	"github.com/multiproc/multiproc/manager"
)

var errOutOfStock = remote.Register(errors.New("mgrtest: out of stock"))

type reservedError struct {
	By    string
	Until int64
}

func (e *reservedError) Error() string { return "reserved by " + e.By }

func init() { remote.RegisterType[*reservedError]() }

// Shop is a custom type whose methods fail with registered errors.
type Shop struct{}

func (s *Shop) Buy(item string) error {
	switch item {
	case "bread":
		return fmt.Errorf("buy %s: %w", item, fmt.Errorf("stock: %w", errOutOfStock))
	case "table":
		return fmt.Errorf("buy %s: %w", item, &reservedError{By: "ann", Until: 99})
	}
	return errors.New("mgrtest: unregistered failure")
}

var _ = manager.RegisterType("Shop", func() *Shop { return &Shop{} })

// A custom method's registered errors keep their identity in the client,
// with the server in another process.
func TestRemoteErrorIdentity(t *testing.T) {
	m := startManager(t)
	ctx := ctxT(t)
	shop, err := m.Client.Create(ctx, "Shop")
	if err != nil {
		t.Fatal(err)
	}
	_, err = shop.Call(ctx, "Buy", "bread")
	var re *manager.RemoteError
	if !errors.Is(err, errOutOfStock) || !errors.As(err, &re) || re.Message != "buy bread: stock: mgrtest: out of stock" {
		t.Fatalf("sentinel: %v (errors.Is %v)", err, errors.Is(err, errOutOfStock))
	}
	_, err = shop.Call(ctx, "Buy", "table")
	var rv *reservedError
	if !errors.As(err, &rv) || rv.By != "ann" || rv.Until != 99 {
		t.Fatalf("typed: errors.As gave %+v from %v", rv, err)
	}
	_, err = shop.Call(ctx, "Buy", "chair")
	if err == nil || errors.Is(err, errOutOfStock) || errors.Is(err, manager.ErrKeyNotFound) {
		t.Fatalf("unregistered: %v", err)
	}
}
