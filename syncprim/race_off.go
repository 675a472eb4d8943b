// SPDX-License-Identifier: Apache-2.0

//go:build !race

package syncprim

import "unsafe"

func raceAcquire(unsafe.Pointer) {}
func raceRelease(unsafe.Pointer) {}
