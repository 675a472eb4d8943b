package queue

import (
	"testing"
)

func TestSmoke(t *testing.T) {
	q := must[*Queue[int]](t)(New[int]())
	defer q.Close()
	ctx := ctxT(t)
	for i := range 100000 {
		if err := q.Put(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if q.Len() != 100000 {
		t.Fatal(q.Len())
	}
	for i := range 100000 {
		v, err := q.Get(ctx)
		if err != nil || v != i {
			t.Fatal(v, err)
		}
	}
	if !q.Empty() {
		t.Fatal("not empty")
	}
}
