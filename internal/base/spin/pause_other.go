// SPDX-License-Identifier: Apache-2.0

//go:build !amd64 && !arm64

package spin

import "sync/atomic"

var pauseSink atomic.Uint32

// pause burns a few cycles per iteration where no spin-wait hint is known.
func pause(n uint32) {
	for i := uint32(0); i < n; i++ {
		pauseSink.Load()
	}
}
