// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"context"
	"testing"
)

// lookupName is the registry's entry point for other servers of the same
// objects (a CPython-protocol server): it finds a published object's id,
// and nothing for a name not published or unpublished.
func TestLookupNameInternal(t *testing.T) {
	s := NewServer()
	defer s.Close()
	if _, ok := s.lookupName("jobs"); ok {
		t.Fatal("found a name never published")
	}
	if err := s.PublishNew(context.Background(), "jobs", "Queue", 0); err != nil {
		t.Fatal(err)
	}
	id, ok := s.lookupName("jobs")
	if !ok {
		t.Fatal("published name not found")
	}
	s.mu.Lock()
	e := s.objs[id]
	s.mu.Unlock()
	if e == nil || e.ti.name != "Queue" || e.refs != 1 {
		t.Fatalf("entry %+v, want a Queue held by its name only", e)
	}
	if err := s.Unpublish("jobs"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.lookupName("jobs"); ok {
		t.Fatal("found an unpublished name")
	}
	if n := s.NumObjects(); n != 0 {
		t.Fatalf("%d objects after Unpublish, want 0", n)
	}
}
