// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/manager"
	"github.com/multiproc/multiproc/process"
)

// Structs in managers: Go users model data as structs, so a typed
// Dict[K, V] with a struct V, a List of structs, a struct in a Namespace
// and a struct argument of a custom type's method must work, across
// processes.

type Address struct {
	Street string
	Zip    *int
}

type Audit struct {
	By string
	At time.Time // a text form (MarshalText/UnmarshalText)
}

type Item struct {
	SKU   string
	Qty   uint16
	Price float64
	Tags  []string
}

type Order struct {
	Audit // embedded: one field named "Audit"
	ID    int64
	Items []Item
	Ship  *Address
	Attrs map[string]Item
	Notes any
	Blob  []byte
	Grid  [2][2]int8
	note  string // unexported: not stored
}

func sampleOrders() []Order {
	zip := 12345
	at := time.Date(2026, 12, 6, 2, 30, 0, 123456789, time.FixedZone("CET", 3600))
	return []Order{
		{
			Audit: Audit{By: "alice", At: at},
			ID:    1,
			Items: []Item{{SKU: "apple", Qty: 3, Price: 0.5, Tags: []string{"fruit", "red"}}, {SKU: "pear", Qty: 1}},
			Ship:  &Address{Street: "Main St 1", Zip: &zip},
			Attrs: map[string]Item{"gift": {SKU: "card", Qty: 1, Price: 2.25}},
			Notes: "leave at the door",
			Blob:  []byte{0, 1, 2, 255},
			Grid:  [2][2]int8{{1, -2}, {3, -128}},
		},
		{ID: 2, Audit: Audit{By: "bob", At: at.Add(time.Hour).UTC()}, Items: []Item{}, Attrs: map[string]Item{}, Blob: []byte{}},
	}
}

// orderOpts compares orders as they come back: unexported fields are
// not stored, and a nil slice or map comes back empty (as with gob).
var orderOpts = cmp.Options{cmpIgnoreUnexported(), cmpopts.EquateEmpty()}

func cmpIgnoreUnexported() cmp.Option {
	return cmp.FilterPath(func(p cmp.Path) bool {
		sf, ok := p.Index(-1).(cmp.StructField)
		return ok && sf.Name() == "note"
	}, cmp.Ignore())
}

var (
	childStructWriter = process.Register("mgr.structs.writer", func(ctx context.Context, d *manager.Dict[int64, Order], l *manager.List[Order], n *manager.Namespace) error {
		for _, o := range sampleOrders() {
			o.note = "never stored"
			if err := d.Set(ctx, o.ID, o); err != nil {
				return err
			}
			if err := l.Append(ctx, o); err != nil {
				return err
			}
		}
		return n.Set(ctx, "latest", sampleOrders()[0])
	})
	childStructReader = process.Register("mgr.structs.reader", func(ctx context.Context, d *manager.Dict[int64, Order], l *manager.List[Order], n *manager.Namespace) error {
		want := sampleOrders()
		for _, w := range want {
			got, err := d.Get(ctx, w.ID)
			if err != nil {
				return err
			}
			if diff := cmp.Diff(w, got, orderOpts); diff != "" {
				return fmt.Errorf("dict[%d] (-want +got):\n%s", w.ID, diff)
			}
		}
		got, err := l.Copy(ctx)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(want, got, orderOpts); diff != "" {
			return fmt.Errorf("list (-want +got):\n%s", diff)
		}
		latest, err := manager.NamespaceGet[Order](ctx, n, "latest")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(want[0], latest, orderOpts); diff != "" {
			return fmt.Errorf("namespace (-want +got):\n%s", diff)
		}
		// The reader changes one order in place for the parent to see.
		w := want[1]
		w.Items = append(w.Items, Item{SKU: "added by the reader", Qty: 7})
		return d.Set(ctx, w.ID, w)
	})
)

// One process stores structs, another reads them back equal, and the
// parent sees the second one's change.
func TestStructsAcrossProcesses(t *testing.T) {
	mptest.CheckChildren(t)
	m := startManager(t)
	ctx := ctxT(t)
	d, err := manager.NewDict[int64, Order](ctx, m.Client)
	if err != nil {
		t.Fatal(err)
	}
	l, err := manager.NewList[Order](ctx, m.Client)
	if err != nil {
		t.Fatal(err)
	}
	n, err := manager.NewNamespace(ctx, m.Client)
	if err != nil {
		t.Fatal(err)
	}
	runChild(t, childStructWriter, d, l, n)
	runChild(t, childStructReader, d, l, n)

	want := sampleOrders()
	want[1].Items = append(want[1].Items, Item{SKU: "added by the reader", Qty: 7})
	got, err := d.Copy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[int64]Order{1: want[0], 2: want[1]}, got, orderOpts); diff != "" {
		t.Fatalf("dict (-want +got):\n%s", diff)
	}
	// The server compares structs as values: Index and Remove find them.
	orders := sampleOrders()
	if i, err := l.Index(ctx, orders[1]); err != nil || i != 1 {
		t.Fatalf("Index = %d, %v; want 1", i, err)
	}
	if err := l.Remove(ctx, orders[0]); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.Len(ctx); n != 1 {
		t.Fatalf("len %d after Remove, want 1", n)
	}
	// Read as an untyped value, a struct is a map of its exported fields.
	v, err := n.Get(ctx, "latest")
	if err != nil {
		t.Fatal(err)
	}
	fields, ok := v.(map[any]any)
	if !ok || fields["ID"] != int64(1) || fields["Audit"].(map[any]any)["By"] != "alice" {
		t.Fatalf("untyped struct: %#v", v)
	}
	if _, ok := fields["note"]; ok {
		t.Fatal("an unexported field was stored")
	}
}

// Pointer-typed values and values holding proxies.
type Shelf struct {
	Name  string
	Stock *manager.Dict[string, int] // a nested proxy
	Next  *Shelf
}

func TestStructPointersAndProxies(t *testing.T) {
	_, c := pipeServer(t)
	ctx := ctxT(t)
	stock, err := manager.NewDict[string, int](ctx, c, map[string]int{"apples": 3})
	if err != nil {
		t.Fatal(err)
	}
	d, err := manager.NewDict[string, *Shelf](ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "a", &Shelf{Name: "a", Stock: stock, Next: &Shelf{Name: "b"}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "nil", nil); err != nil {
		t.Fatal(err)
	}
	stock.Release(ctx) // the dict holds a reference now
	got, err := d.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "a" || got.Next == nil || got.Next.Name != "b" || got.Next.Stock != nil || got.Next.Next != nil {
		t.Fatalf("got %+v", got)
	}
	if n, err := got.Stock.Get(ctx, "apples"); err != nil || n != 3 {
		t.Fatalf("stock through the nested proxy: %d, %v", n, err)
	}
	if got, err := d.Get(ctx, "nil"); err != nil || got != nil {
		t.Fatalf("nil shelf: %+v, %v", got, err)
	}
	// A cycle of pointers is refused, not followed forever.
	loop := &Shelf{Name: "loop"}
	loop.Next = loop
	if err := d.Set(ctx, "loop", loop); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("a cyclic struct: %v", err)
	}
}

// Types that cannot cross the wire are refused on the client with the
// path of the field that holds them, and nothing is sent.
func TestStructRefused(t *testing.T) {
	type Line struct {
		SKU      string
		Callback func()
	}
	type Bill struct {
		Lines []Line
	}
	type WithChan struct {
		Name  string
		Done  chan struct{}
		Extra map[string]any
	}
	type WithAny struct{ Extra map[string]any }
	type Hidden struct{ n int }
	type WithHidden struct{ Lock sync.Mutex }
	type Deep struct{ ByKey map[string][]WithChan }
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"func in a slice", Bill{Lines: []Line{{SKU: "x"}}}, "manager: cannot encode field Bill.Lines[].Callback: func type"},
		{"nil chan", WithChan{Name: "n"}, "manager: cannot encode field WithChan.Done: chan type"},
		{"in a slice of structs", []Bill{{Lines: []Line{{}}}}, "manager: cannot encode field Bill.Lines[].Callback: func type"},
		{"in any", WithAny{Extra: map[string]any{"c": complex(1, 2)}}, `manager: cannot encode field WithAny.Extra["c"]: complex128 type`},
		{"map value path", Deep{ByKey: map[string][]WithChan{"k": {{}}}}, `manager: cannot encode field Deep.ByKey["k"][].Done: chan type`},
		{"only unexported fields", Hidden{n: 1}, "manager: cannot send a value of type manager_test.Hidden: it has no exported fields"},
		{"a field with only unexported fields", WithHidden{}, "manager: cannot encode field WithHidden.Lock: struct sync.Mutex has no exported fields"},
		{"plain func", func() {}, "manager: cannot send a value of type func()"},
	}
	_, c := pipeServer(t)
	ctx := ctxT(t)
	q, err := manager.NewQueue[any](ctx, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := q.Put(ctx, tt.v)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Put(%T): %v\nwant %s", tt.v, err, tt.want)
			}
			if _, err := manager.ToValue(tt.v); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("ToValue(%T): %v\nwant %s", tt.v, err, tt.want)
			}
		})
	}
	if n, _ := q.Qsize(ctx); n != 0 {
		t.Fatalf("qsize %d after refused puts", n)
	}
}

// A stored value that does not fit the struct is an error naming the
// field; names the struct does not have are ignored.
func TestStructDecodeErrors(t *testing.T) {
	_, c := pipeServer(t)
	ctx := ctxT(t)
	raw, err := manager.NewDict[string, any](ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	raw.Set(ctx, "bad", map[string]any{"ID": 1, "Items": []any{map[string]any{"Qty": "many"}}})
	raw.Set(ctx, "extra", map[string]any{"ID": 5, "Unknown": true})
	raw.Set(ctx, "intkeys", map[int]any{1: 2})
	get := func(k string) (Order, error) { return manager.Call[Order](ctx, raw, "Get", k) }
	if _, err := get("bad"); err == nil || err.Error() != "manager: cannot decode field Order.Items[].Qty: cannot decode a string value into uint16" {
		t.Fatalf("bad field: %v", err)
	}
	if o, err := get("extra"); err != nil || o.ID != 5 {
		t.Fatalf("extra field: %+v, %v", o, err)
	}
	if _, err := get("intkeys"); err == nil || !strings.Contains(err.Error(), "cannot name a field of manager_test.Order") {
		t.Fatalf("int keys: %v", err)
	}
}

// A custom type's methods take and return structs.
type OrderBook struct {
	mu     sync.Mutex
	orders map[int64]Order
}

var _ = manager.RegisterType("OrderBook", func() *OrderBook { return &OrderBook{orders: map[int64]Order{}} })

// Add stores o and returns how many items the book holds.
func (b *OrderBook) Add(o Order) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.orders[o.ID] = o
	n := 0
	for _, o := range b.orders {
		n += len(o.Items)
	}
	return n
}

// Get returns an order (ErrKeyNotFound when missing).
func (b *OrderBook) Get(id int64) (*Order, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.orders[id]
	if !ok {
		return nil, manager.ErrKeyNotFound
	}
	return &o, nil
}

func TestStructCustomMethods(t *testing.T) {
	m := startManager(t) // the type's methods run in the server process
	ctx := ctxT(t)
	book, err := m.Create(ctx, "OrderBook")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, o := range sampleOrders() {
		n, err := manager.Call[int](ctx, book, "Add", o)
		if err != nil {
			t.Fatal(err)
		}
		total = n
	}
	if total != 2 {
		t.Fatalf("items %d, want 2", total)
	}
	got, err := manager.Call[Order](ctx, book, "Get", int64(1))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sampleOrders()[0], got, orderOpts); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if _, err := manager.Call[Order](ctx, book, "Get", int64(9)); !errors.Is(err, manager.ErrKeyNotFound) {
		t.Fatalf("missing order: %v", err)
	}
	// An argument that does not fit the method's struct is ErrBadArgs.
	if _, err := book.Call(ctx, "Add", map[string]any{"ID": "one"}); !errors.Is(err, manager.ErrBadArgs) || !strings.Contains(err.Error(), "Order.ID") {
		t.Fatalf("bad struct argument: %v", err)
	}
}
