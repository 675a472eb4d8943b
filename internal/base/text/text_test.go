// SPDX-License-Identifier: Apache-2.0

package text

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		s    string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijk", 10, "abcdefghij..."},
		{"abcdefghiܴ", 10, "abcdefghi..."}, // the cut falls inside U+0734
		{"abcdefg€x", 9, "abcdefg..."},     // inside a three-byte rune
		{"abcdefgh€", 10, "abcdefgh..."},
		{"a\xffb", 10, "a\uFFFDb"},
		{"\xf0\x9f\x98", 10, "\uFFFD"},
		{"", 0, ""},
		{"ab", 0, "..."},
	} {
		got := Clip(tc.s, tc.max, "...")
		if got != tc.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.s, tc.max, got, tc.want)
		}
	}
}

func TestValid(t *testing.T) {
	for in, want := range map[string]string{"ok €": "ok €", "a\xff\xfeb": "a\uFFFDb", "\xed\xb3\xbf": "\uFFFD"} {
		if got := Valid(in); got != want {
			t.Errorf("Valid(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzClip(f *testing.F) {
	f.Add("abcdefghiܴ", 10)
	f.Add("\xff\xfe", 1)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1<<20 {
			return
		}
		got := Clip(s, max, "~")
		if !utf8.ValidString(got) {
			t.Fatalf("Clip(%q, %d) = %q is not UTF-8", s, max, got)
		}
		if len(s) <= max && utf8.ValidString(s) && got != s {
			t.Fatalf("Clip changed a short valid string: %q -> %q", s, got)
		}
		if len(s) > max {
			body := strings.TrimSuffix(got, "~")
			if body == got {
				t.Fatalf("Clip(%q, %d) = %q lacks its tail", s, max, got)
			}
			if utf8.ValidString(s) && (len(body) > max || len(body) < max-utf8.UTFMax+1 || !strings.HasPrefix(s, body)) {
				t.Fatalf("Clip(%q, %d) = %q is not a rune-aligned prefix", s, max, got)
			}
		}
	})
}
