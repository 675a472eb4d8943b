// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package queue

import "time"

const supported = false

func futexWait(addr *uint32, val uint32, timeout time.Duration) error { return ErrUnsupported }
func futexWakeAll(addr *uint32)                                       {}
func releaseMemory(b []byte)                                          {}
