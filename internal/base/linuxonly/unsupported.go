// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package linuxonly

// This line fails the build on purpose: multiproc runs on Linux only (kernel
// 5.3 or later), on any architecture. See the package comment.
var _ int = "multiproc needs Linux (see README, Platform)"
