// SPDX-License-Identifier: Apache-2.0

// Package kitbench holds process's benchmarks for the baseline kit
// (BenchmarkKit: start.spawn, start.spawn.parallel2) in a test binary of
// their own. Every child re-executes the test binary, so its start cost
// includes the binary's package initialisation: kept apart from the
// package's tests (go-cmp, protocmp, ...), the binary is the size of a
// small real program using multiproc.
package kitbench
