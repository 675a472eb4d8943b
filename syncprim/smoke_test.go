package syncprim

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSmokeInProcess(t *testing.T) {
	ctx := context.Background()
	l, err := NewLock()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.TryAcquire(); ok {
		t.Fatal("TryAcquire of a held lock succeeded")
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second Release: %v", err)
	}
	s, err := NewSemaphore(0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := s.Acquire(c); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire: %v", err)
	}
}
