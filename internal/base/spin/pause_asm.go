// SPDX-License-Identifier: Apache-2.0

//go:build amd64 || arm64

package spin

// pause executes n CPU spin-wait hints (PAUSE on amd64, YIELD on arm64).
//
//go:noescape
func pause(n uint32)
