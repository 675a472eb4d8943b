// Package startbench holds benchmarks that need both a start method and
// the modules built on process: pool worker replacement and pool and
// manager lifecycles through the forkserver. The process, pool, manager
// and forkserver modules may not import each other in that direction, so
// these live here, where tools may import every module. It has no code
// of its own: see bench_test.go, run by `make bench` (mp bench).
package startbench
