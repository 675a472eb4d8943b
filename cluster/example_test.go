// SPDX-License-Identifier: Apache-2.0

package cluster_test

import (
	"context"
	"fmt"

	"github.com/multiproc/multiproc/cluster"
	"github.com/multiproc/multiproc/pool"
)

// Tasks are registered at package level, as for a local pool: agents and
// their workers are re-executions of this binary.
var cube = pool.Register("example.cube", func(ctx context.Context, x int) (int, error) {
	return x * x * x, nil
})

// The cluster pool is a pool.Runner: the same Task calls as on a local
// pool. With no address it embeds a NATS server and starts local agents.
func ExampleNew() {
	ctx := context.Background()
	p, err := cluster.New(ctx, cluster.Agents(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	cubes, err := cube.Map(ctx, p, []int{1, 2, 3, 4})
	fmt.Println(cubes, err)
	c, err := cube.Apply(ctx, p, 5)
	fmt.Println(c, err)
	// Output:
	// [1 8 27 64] <nil>
	// 125 <nil>
}
