// SPDX-License-Identifier: Apache-2.0

package queue

import "golang.org/x/sys/unix"

// releaseMemory gives the pages of b back to the kernel (the memfd keeps
// its size; the range reads as zeros afterwards).
func releaseMemory(b []byte) {
	if len(b) > 0 {
		unix.Madvise(b, unix.MADV_REMOVE)
	}
}
