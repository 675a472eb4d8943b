// SPDX-License-Identifier: Apache-2.0

//go:build race

package manager_test

// raceEnabled: the tests run under -race, several times slower; load tests
// make fewer calls (the same concurrency) to stay inside their deadline.
const raceEnabled = true
