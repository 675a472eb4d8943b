// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package shm

import (
	"errors"
	"testing"
)

func TestUnsupported(t *testing.T) {
	if _, err := New(8); !errors.Is(err, ErrUnsupported) {
		t.Errorf("New: %v", err)
	}
	if _, err := Create("x", 8); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Create: %v", err)
	}
	if _, err := Open("x"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Open: %v", err)
	}
	if _, err := NewArena(8); !errors.Is(err, ErrUnsupported) {
		t.Errorf("NewArena: %v", err)
	}
}
