// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/multiproc/multiproc/manager"
)

// A Go program uses a manager that Python serves:
//
//	from multiprocessing.managers import SyncManager
//	import queue
//	q = queue.Queue()
//	class M(SyncManager): pass
//	M.register('get_queue', callable=lambda: q)
//	M(address=('127.0.0.1', 50000), authkey=b'secret').get_server().serve_forever()
//
// (Not run: it needs that Python process; TestPyClient* run the real thing.)
func ExampleConnectPython() {
	ctx := context.Background()
	c, err := manager.ConnectPython(ctx, "tcp", "127.0.0.1:50000", manager.Authkey([]byte("secret")))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	d, err := manager.NewPyDict[string, int](ctx, c) // m.dict()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Release(ctx)
	d.Set(ctx, "hits", 1)
	if _, err := d.Get(ctx, "misses"); errors.Is(err, manager.ErrKeyNotFound) {
		fmt.Println("KeyError:", err)
	}

	o, err := c.Create(ctx, "get_queue") // m.get_queue()
	if err != nil {
		fmt.Println(err)
		return
	}
	q := manager.PyQueueFrom[string](o)
	defer q.Release(ctx)
	q.Put(ctx, "job 1")
}
