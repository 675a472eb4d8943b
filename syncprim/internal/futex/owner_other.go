// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package futex

import "os"

// An ID names a process: its pid in the low 32 bits. Without /proc no start
// time is recorded.
type ID uint64

// Pid returns the process id of id.
func (id ID) Pid() int { return int(uint32(id)) }

// Self returns the calling process's ID.
func Self() ID { return ID(uint32(os.Getpid())) }

// Alive cannot tell on this system and reports true.
func Alive(id ID) bool { return id != 0 }

// Exists cannot tell on this system and reports true.
func Exists(id ID) bool { return id != 0 }
