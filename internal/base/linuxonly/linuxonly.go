// SPDX-License-Identifier: Apache-2.0

// Package linuxonly stops a build for any system but Linux with one clear
// message. multiproc needs Linux: memfd, futex, pidfds, eventfd, SCM_RIGHTS,
// /proc. Package ipc imports it, and so, through ipc or directly, does every
// package of the set that uses the system; a build for darwin, windows, freebsd, ...
// fails in this package alone (the packages above it are not compiled), with
//
//	cannot use "multiproc needs Linux (see README, Platform)" (untyped string constant) as int value
//
// instead of a screenful of undefined system calls. docs/architecture.md,
// "Platforms", says why no stub builds there instead.
package linuxonly
