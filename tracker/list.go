// SPDX-License-Identifier: Apache-2.0

package tracker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Resource is one registered resource.
type Resource struct {
	Type    string // resource type, e.g. SharedMemory
	Name    string // as registered (a shm segment: without the leading "/")
	Pid     int    // the process that registered it
	Tracker int    // the pid of the tracker that holds it
}

// Tracker is a running tracker and what it holds.
type Tracker struct {
	Pid       int
	Resources []Resource // sorted by type, then name
}

// List returns the resources registered with this process tree's
// tracker, sorted by type then name. It returns ErrNotRunning when this
// process has no tracker (it neither started one nor inherited one).
func List(ctx context.Context) ([]Resource, error) {
	pid := Pid()
	if pid == 0 {
		return nil, ErrNotRunning
	}
	return listPid(ctx, pid)
}

// ListAll discovers every running tracker of this user that this process
// can reach (the abstract unix sockets of this network namespace, found
// in /proc/net/unix) and returns them with their resources, sorted by
// pid. A tracker that exits while it is asked is left out.
func ListAll(ctx context.Context) ([]Tracker, error) {
	pids, err := trackerPids()
	if err != nil {
		return nil, err
	}
	var out []Tracker
	for _, pid := range pids {
		res, err := listPid(ctx, pid)
		if err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			continue // gone, or another user's
		}
		out = append(out, Tracker{Pid: pid, Resources: res})
	}
	return out, nil
}

// trackerPids lists the pids of the trackers listening in this network
// namespace.
func trackerPids() ([]int, error) {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	defer f.Close()
	var pids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 {
			continue
		}
		path, ok := strings.CutPrefix(fields[7], "@"+socketPrefix)
		if !ok {
			continue
		}
		if pid, err := strconv.Atoi(path); err == nil && pid > 0 && !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tracker: read /proc/net/unix: %w", err)
	}
	slices.Sort(pids)
	return pids, nil
}

// listPid asks the tracker pid for its registry.
func listPid(ctx context.Context, pid int) ([]Resource, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", "@"+socketPrefix+strconv.Itoa(pid))
	if err != nil {
		return nil, fmt.Errorf("tracker: list: %w", err)
	}
	c := nc.(*net.UnixConn)
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write([]byte{'L'}); err != nil {
		return nil, listErr(ctx, err)
	}
	c.CloseWrite()
	b, err := io.ReadAll(io.LimitReader(c, 64<<20))
	if err != nil {
		return nil, listErr(ctx, err)
	}
	if len(b) == 0 || b[0] != 'K' {
		return nil, fmt.Errorf("tracker: list: tracker %d refused the request (another user's?)", pid)
	}
	b = b[1:]
	res := []Resource{}
	for len(b) > 0 {
		m, n, err := decode(b)
		if err != nil || m.op != opRegister {
			return nil, fmt.Errorf("tracker: list: bad reply from tracker %d: %w", pid, errors.Join(err, errBad))
		}
		b = b[n:]
		res = append(res, Resource{Type: m.rtype, Name: m.name, Pid: m.pid, Tracker: pid})
	}
	return res, nil
}

func listErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("tracker: list: %w", err)
}
