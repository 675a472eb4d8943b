// SPDX-License-Identifier: Apache-2.0

// Package text shortens text that crosses a process boundary: error
// messages, stacks and reprs a peer sent or will read. A Python str and a
// protobuf string must be valid UTF-8, so what Clip returns always is,
// whatever bytes it was given and wherever the cut falls.
package text

import (
	"strings"
	"unicode/utf8"
)

// Clip returns s if it is at most max bytes, or else its first max bytes
// cut back to a rune boundary, followed by tail. Bytes that are not
// UTF-8 become U+FFFD, so the result is valid UTF-8 even when s is not.
func Clip(s string, max int, tail string) string {
	if len(s) > max {
		cut := max
		// A rune is at most utf8.UTFMax bytes: step back over the
		// continuation bytes of the one the cut falls in.
		for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
			cut--
		}
		s = s[:cut] + tail
	}
	return Valid(s)
}

// Valid returns s with every run of bytes that is not UTF-8 replaced by
// U+FFFD: text that must reach a peer as a Python str or a protobuf
// string, whatever bytes it quotes.
func Valid(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}
