// SPDX-License-Identifier: Apache-2.0

package main

import "unsafe"

// unsafeU16 views a byte buffer (shared memory, page aligned) as uint16s.
func unsafeU16(b []byte) []uint16 {
	if len(b) < 2 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}
