// SPDX-License-Identifier: Apache-2.0

// Package startbench holds the benchmarks bound by starting processes:
// the baseline kit's start.forkserver, pool.lifecycle and
// manager.lifecycle, pool worker replacement with each start method, and
// the pool and manager lifecycles through the forkserver. A child is a
// re-execution of the binary that starts it, so these run in a binary
// that links what a program using multiproc links and no test-only
// package (see BenchmarkKit). It has no code of its own: see
// bench_test.go, run by `make bench` (mp bench).
package startbench
