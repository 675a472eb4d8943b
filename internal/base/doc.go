// SPDX-License-Identifier: Apache-2.0

// Package base is the home of the low-level mechanisms that several
// multiproc modules share: how values become bytes (valenc), how a
// process waits (spin, futex), and how text that crosses a process
// boundary is cut to size (text). It is internal to
// the multiproc module set: Go's internal rule lets every module under
// github.com/multiproc/multiproc import it and nothing else. It is one
// more module of the set, versioned and released with the rest, and it
// imports no other multiproc module.
package base
