// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"encoding/binary"
	"testing"
)

// FuzzParseHandleSet feeds the decoder of a handle set's descriptor
// (what a worker receives for an Initializer's handles): it never panics,
// bounds what it allocates, and what it accepts accounts for every file.
func FuzzParseHandleSet(f *testing.F) {
	seed := binary.AppendUvarint(nil, 2)
	seed = binary.AppendUvarint(seed, 1)
	seed = binary.AppendUvarint(seed, 14)
	seed = append(seed, "*syncprim.Lock"...)
	seed = binary.AppendUvarint(seed, 3)
	seed = append(seed, 1, 2, 3)
	seed = append(seed, 0, 0, 0) // a nil handle
	f.Add(1, seed)
	f.Add(0, []byte{0})
	f.Add(0, []byte{})
	f.Fuzz(func(t *testing.T, nfiles int, b []byte) {
		got, err := parseHandleSet(nfiles, b)
		if err != nil {
			return
		}
		total := 0
		for _, g := range got {
			total += len(g.files)
			if g.kind == "" && (len(g.files) > 0 || len(g.desc) > 0) {
				t.Fatalf("a nil handle with files or a descriptor: %+v", g)
			}
		}
		if total != nfiles || len(got) > maxInitHandles {
			t.Fatalf("accepted %d handles with %d files for %d files", len(got), total, nfiles)
		}
	})
}

// FuzzParseArgHandles feeds the decoder of task arguments that carry shm
// handles (what a worker receives in a chunk): it never panics, bounds
// every count, and accepts only what accounts for every byte.
func FuzzParseArgHandles(f *testing.F) {
	seed := binary.AppendUvarint(nil, 1234)
	seed = binary.AppendUvarint(seed, 2)
	seed = append(seed, 7, 8)
	seed = binary.AppendUvarint(seed, 2)
	seed = binary.AppendUvarint(seed, 12)
	seed = append(seed, "*shm.Segment"...)
	seed = binary.AppendUvarint(seed, 1)
	seed = append(seed, 9, 1, 2)
	seed = binary.AppendUvarint(seed, 1)
	seed = append(seed, 1)
	seed = binary.AppendUvarint(seed, 0) // a nil handle
	f.Add(1, seed)
	f.Add(0, []byte{1})
	f.Add(2, []byte{})
	f.Fuzz(func(t *testing.T, n int, b []byte) {
		pid, vals, err := parseArgHandles(b, n)
		if err != nil {
			return
		}
		if pid <= 0 || len(vals) != n {
			t.Fatalf("pid %d, %d values for %d", pid, len(vals), n)
		}
		for _, v := range vals {
			if len(v.handles) > maxInitHandles {
				t.Fatalf("%d handles", len(v.handles))
			}
			for _, h := range v.handles {
				if len(h.files) > maxHandleFiles || (h.kind == "" && (len(h.files) > 0 || len(h.desc) > 0)) {
					t.Fatalf("bad handle accepted: %+v", h)
				}
			}
		}
	})
}
