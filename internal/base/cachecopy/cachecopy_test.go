// SPDX-License-Identifier: Apache-2.0

package cachecopy

import (
	"bytes"
	"testing"
)

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ byte(i>>11)
	}
	return b
}

// TestCopy: bytes in = bytes out at the edges of the pieces, with dst
// shorter, as long as and longer than src, Append onto a prefix, and
// Clone of two parts into memory of its own.
func TestCopy(t *testing.T) {
	for _, n := range []int{0, 1, Piece - 1, Piece, Piece + 1, 3*Piece + 7} {
		src := pattern(n)
		for _, d := range []int{-1, 0, 5} {
			if n+d < 0 {
				continue
			}
			dst := make([]byte, n+d)
			want := min(n, n+d)
			if got := Copy(dst, src); got != want || !bytes.Equal(dst[:want], src[:want]) {
				t.Fatalf("Copy of %d bytes into %d: %d copied, equal %v", n, n+d, got, bytes.Equal(dst[:want], src[:want]))
			}
			if d > 0 && !bytes.Equal(dst[want:], make([]byte, d)) {
				t.Fatalf("Copy of %d bytes into %d wrote past them", n, n+d)
			}
		}
		got := Append([]byte("head"), src)
		if !bytes.Equal(got, append([]byte("head"), src...)) {
			t.Fatalf("Append of %d bytes", n)
		}
		half := n / 2
		c := Clone(src[:half], src[half:])
		if !bytes.Equal(c, src) || c == nil {
			t.Fatalf("Clone of %d bytes in two parts", n)
		}
		if n > 0 {
			c[0] ^= 0xff // the caller's own memory
			if src[0] == c[0] {
				t.Fatalf("Clone of %d bytes shares memory with its source", n)
			}
		}
	}
}

// BenchmarkCopy1MiB copies 1 MiB as Copy does and as copy does (which
// stores non-temporally from 1 MiB on amd64).
func BenchmarkCopy1MiB(b *testing.B) {
	src, dst := pattern(1<<20), make([]byte, 1<<20)
	b.Run("cachecopy", func(b *testing.B) {
		b.SetBytes(1 << 20)
		for b.Loop() {
			Copy(dst, src)
		}
	})
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(1 << 20)
		for b.Loop() {
			copy(dst, src)
		}
	})
}
