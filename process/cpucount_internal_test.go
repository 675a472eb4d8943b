// SPDX-License-Identifier: Apache-2.0

package process

import "testing"

func TestCountCPUList(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"0", 1},
		{"0-1", 2},
		{"0-3,5,7-8", 7},
		{"0-63", 64},
		{"", 0},
		{"3-1", 0},
		{"a-b", 0},
		{"-1", 0},
		{"0,", 0},
	}
	for _, tt := range tests {
		if got := countCPUList(tt.in); got != tt.want {
			t.Errorf("countCPUList(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
