// SPDX-License-Identifier: Apache-2.0

package pool

import "time"

// TimeoutSlack sets how long after a task's deadline (TaskTimeout) the
// pool stops the task's worker, 100ms by default. Tests whose tasks must
// not be killed (a task that honours its deadline, quick tasks in the
// chunk of one that times out) lengthen it: a loaded machine can delay a
// worker's answer by more than 100ms.
func TimeoutSlack(d time.Duration) Option {
	return func(o *options) error {
		o.timeoutSlack = d
		return nil
	}
}
