// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/multiproc/multiproc/manager"
)

// Port of CPython's _TestContainers.

func TestListOps(t *testing.T) {
	ts := startServer(t, "unix")
	ctx, c := ctxT(t), ts.client
	a, err := manager.NewList(ctx, c, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := a.Copy(ctx)
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, got); diff != "" {
		t.Fatal(diff)
	}
	b, _ := manager.NewList[int](ctx, c)
	if got, _ := b.Copy(ctx); len(got) != 0 {
		t.Fatalf("empty list copy = %v", got)
	}
	if err := b.Extend(ctx, 0, 1, 2, 3, 4, 5); err != nil {
		t.Fatal(err)
	}
	if err := b.Repeat(ctx, 2); err != nil {
		t.Fatal(err)
	}
	got, _ = b.Copy(ctx)
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5}, got); diff != "" {
		t.Fatal(diff)
	}
	s, _ := b.Slice(ctx, 2, 5)
	if diff := cmp.Diff([]int{2, 3, 4}, s); diff != "" {
		t.Fatal(diff)
	}
	s, _ = b.SliceFrom(ctx, -2)
	if diff := cmp.Diff([]int{4, 5}, s); diff != "" {
		t.Fatal(diff)
	}
	if v, _ := b.Get(ctx, -1); v != 5 {
		t.Fatalf("b[-1] = %d", v)
	}
	if _, err := b.Get(ctx, 12); !errors.Is(err, manager.ErrIndexOutOfRange) {
		t.Fatalf("b[12]: %v", err)
	}
	if err := b.Remove(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if i, _ := b.Index(ctx, 3); i != 8 {
		t.Fatalf("index of 3 = %d", i)
	}
	if err := b.Remove(ctx, 42); !errors.Is(err, manager.ErrNotFound) {
		t.Fatalf("remove 42: %v", err)
	}
	if n, _ := b.Count(ctx, 0); n != 2 {
		t.Fatalf("count 0 = %d", n)
	}
	if v, _ := b.Pop(ctx); v != 5 {
		t.Fatalf("pop = %d", v)
	}
	if v, _ := b.Pop(ctx, 0); v != 0 {
		t.Fatalf("pop(0) = %d", v)
	}
	if err := b.Insert(ctx, 0, 100); err != nil {
		t.Fatal(err)
	}
	if err := b.Reverse(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = b.Copy(ctx)
	if diff := cmp.Diff([]int{4, 3, 2, 1, 0, 5, 4, 2, 1, 100}, got); diff != "" {
		t.Fatal(diff)
	}
	// Iterating a snapshot while the list changes.
	items, err := a.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, v := range items {
		if i != v {
			t.Fatalf("item %d = %d", i, v)
		}
		if n == 0 {
			a.Append(ctx, 99)
		}
		n++
	}
	if n != 10 {
		t.Fatalf("iterated %d items", n)
	}
}

func TestListOfLists(t *testing.T) {
	ts := startServer(t, "unix")
	ctx, c := ctxT(t), ts.client
	a, _ := manager.NewList(ctx, c, 0, 1, 2)
	b, _ := manager.NewList[*manager.List[int]](ctx, c, a)
	// A plain value inside comes back as a copy; a proxy stays a proxy.
	inner, err := b.Get(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := inner.Append(ctx, 3); err != nil {
		t.Fatal(err)
	}
	got, _ := a.Copy(ctx)
	if diff := cmp.Diff([]int{0, 1, 2, 3}, got); diff != "" {
		t.Fatalf("append through the nested proxy did not reach the list (-want +got):\n%s", diff)
	}
	// A list appended to itself must not deadlock the server.
	self, _ := manager.NewList[any](ctx, c)
	if err := self.Append(ctx, self); err != nil {
		t.Fatal(err)
	}
	if n, _ := self.Len(ctx); n != 1 {
		t.Fatalf("len %d", n)
	}
	plain, _ := manager.NewList(ctx, c, []int{1, 2})
	cp, _ := plain.Get(ctx, 0)
	cp[0] = 99
	got2, _ := plain.Get(ctx, 0)
	if got2[0] != 1 {
		t.Fatal("changing a copy changed the shared list")
	}
}

func TestDictOps(t *testing.T) {
	ts := startServer(t, "unix")
	ctx, c := ctxT(t), ts.client
	d, err := manager.NewDict[int, string](ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	for i := 5; i < 10; i++ {
		if err := d.Set(ctx, i, string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := d.Copy(ctx)
	if diff := cmp.Diff(map[int]string{5: "f", 6: "g", 7: "h", 8: "i", 9: "j"}, got); diff != "" {
		t.Fatal(diff)
	}
	keys, _ := d.Keys(ctx)
	if diff := cmp.Diff([]int{5, 6, 7, 8, 9}, keys); diff != "" {
		t.Fatalf("keys not in insertion order (-want +got):\n%s", diff)
	}
	vals, _ := d.Values(ctx)
	if diff := cmp.Diff([]string{"f", "g", "h", "i", "j"}, vals); diff != "" {
		t.Fatal(diff)
	}
	items, _ := d.Items(ctx)
	var ks []int
	for k, v := range items {
		ks = append(ks, k)
		if v != string(rune('a'+k)) {
			t.Fatalf("item %d = %q", k, v)
		}
	}
	if diff := cmp.Diff([]int{5, 6, 7, 8, 9}, ks); diff != "" {
		t.Fatal(diff)
	}
	if v, _ := d.GetOr(ctx, 42, "x"); v != "x" {
		t.Fatalf("GetOr default = %q", v)
	}
	if v, _ := d.SetDefault(ctx, 5, "zz"); v != "f" {
		t.Fatalf("SetDefault existing = %q", v)
	}
	if v, _ := d.Pop(ctx, 5); v != "f" {
		t.Fatalf("pop = %q", v)
	}
	if err := d.Delete(ctx, 5); !errors.Is(err, manager.ErrKeyNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
	if ok, _ := d.Contains(ctx, 6); !ok {
		t.Fatal("6 missing")
	}
	if n, _ := d.Len(ctx); n != 4 {
		t.Fatalf("len %d", n)
	}
	if err := d.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := d.Len(ctx); n != 0 {
		t.Fatalf("len after clear %d", n)
	}
	// An unhashable key is a type error.
	o, _ := c.Create(ctx, "dict")
	if _, err := o.Call(ctx, "Set", []int{1}, 1); !errors.Is(err, manager.ErrTypeError) {
		t.Fatalf("list key: %v", err)
	}
}

func TestDictProxyNested(t *testing.T) {
	mptestFDs(t)
	ts := startServer(t, "unix")
	ctx, c := ctxT(t), ts.client
	pets, _ := manager.NewDict(ctx, c, map[string]int{"ferrets": 2, "hamsters": 4})
	supplies, _ := manager.NewDict(ctx, c, map[string]int{"water": 10, "feed": 3})
	cage, err := manager.NewDict[string, *manager.Dict[string, int]](ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	cage.Set(ctx, "pets", pets)
	cage.Set(ctx, "supplies", supplies)
	s, err := cage.Get(ctx, "supplies")
	if err != nil {
		t.Fatal(err)
	}
	// d['supplies']['blankets'] = 5
	if err := s.Set(ctx, "blankets", 5); err != nil {
		t.Fatal(err)
	}
	got, _ := supplies.Copy(ctx)
	if diff := cmp.Diff(map[string]int{"water": 10, "feed": 3, "blankets": 5}, got); diff != "" {
		t.Fatal(diff)
	}
	// Inner objects outlive the outer proxies that created them.
	pets.Release(ctx)
	supplies.Release(ctx)
	s.Release(ctx)
	p, err := cage.Get(ctx, "pets")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := p.Get(ctx, "hamsters"); n != 4 {
		t.Fatalf("hamsters %d", n)
	}
	p.Release(ctx)
	before, _ := c.Objects(ctx)
	// Dropping the outer dict frees the inner ones.
	if err := cage.Release(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := c.Objects(ctx)
	if len(before)-len(after) != 3 {
		t.Fatalf("releasing the outer dict freed %d objects, want 3 (before %v, after %v)", len(before)-len(after), before, after)
	}
}

func TestQueueInContainers(t *testing.T) {
	ts := startServer(t, "unix")
	ctx, c := ctxT(t), ts.client
	q, _ := manager.NewQueue[string](ctx, c, 0)
	l, _ := manager.NewList[*manager.Queue[string]](ctx, c, q)
	d, _ := manager.NewDict[string, *manager.Queue[string]](ctx, c)
	d.Set(ctx, "q", q)
	lq, _ := l.Get(ctx, 0)
	dq, _ := d.Get(ctx, "q")
	lq.Put(ctx, "from list")
	dq.Put(ctx, "from dict")
	for _, want := range []string{"from list", "from dict"} {
		if v, err := q.Get(ctx); err != nil || v != want {
			t.Fatalf("got %q %v want %q", v, err, want)
		}
	}
}

func TestNamespace(t *testing.T) {
	ts := startServer(t, "unix")
	ctx, c := ctxT(t), ts.client
	n, _ := manager.NewNamespace(ctx, c)
	n.Set(ctx, "name", "Bob")
	n.Set(ctx, "job", "Builder")
	s, _ := n.String(ctx)
	if s != "Namespace(name='Bob', job='Builder')" {
		t.Fatalf("String() = %q", s)
	}
	if _, err := n.Get(ctx, "missing"); !errors.Is(err, manager.ErrKeyNotFound) {
		t.Fatalf("missing attribute: %v", err)
	}
	if err := n.Delete(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	names, _ := n.Names(ctx)
	if diff := cmp.Diff([]string{"name"}, names); diff != "" {
		t.Fatal(diff)
	}
	v, _ := n.Get(ctx, "name")
	if v != "Bob" {
		t.Fatalf("name = %v", v)
	}
}
