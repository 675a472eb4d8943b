// SPDX-License-Identifier: Apache-2.0

package tracker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/ipc"
	"github.com/multiproc/multiproc/process"
)

// pyRegister makes CPython's own resource_tracker client use the tracker
// pipe on fd 3 (as a CPython child of the tree would, given the fd), and
// creates segments with SharedMemory, which registers them
// ("REGISTER:/<name>:shared_memory") and leaves them for the tracker.
const pyRegister = `
import sys
from multiprocessing import resource_tracker, shared_memory
rt = resource_tracker._resource_tracker
rt._fd = 3
rt._pid = None
for n in sys.argv[1:]:
    shared_memory.SharedMemory(name=n, create=True, size=64).close()
`

// fnPython starts the tree's tracker, runs python with the tracker's
// pipe, reports, and waits to be killed.
var fnPython = process.Register("tracker.test.python", func(ctx context.Context, python, version string, names []string, out *ipc.Conn) error {
	defer out.Close()
	if err := EnsureRunning(ctx); err != nil {
		return err
	}
	files, _, err := inheritConn()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, python, append([]string{"-c", pyRegister}, names...)...)
	cmd.ExtraFiles = files
	if version != "" {
		cmd.Env = append(os.Environ(), "PYENV_VERSION="+version)
	}
	outp, err := cmd.CombinedOutput()
	files[0].Close()
	if err != nil {
		return &pyError{err: err, out: string(outp)}
	}
	if err := out.Send(ctx, report{Tracker: Pid()}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
})

type pyError struct {
	err error
	out string
}

func (e *pyError) Error() string { return "python: " + e.err.Error() + ": " + e.out }

// A CPython process of the tree registers with the Go tracker through
// CPython's own resource_tracker client; the tracker cleans its segments
// up when the tree dies.
func TestCPythonClient(t *testing.T) {
	python := mptest.Python(t)
	mptest.RequirePythonVersions(t)
	// shared_memory exists since 3.8.
	versions := slices.DeleteFunc(mptest.PythonVersions(), func(v string) bool {
		var major, minor int
		fmt.Sscanf(v, "%d.%d", &major, &minor)
		return major < 3 || major == 3 && minor < 8
	})
	if len(versions) == 0 {
		versions = []string{""}
	}
	for _, v := range versions {
		t.Run("python"+v, func(t *testing.T) {
			names := uniq(t, 2)
			p, c := startChild(t, nil, false, fnPython, python, v, names)
			ctx, cancel := context.WithTimeout(context.Background(), 60e9)
			defer cancel()
			var r report
			if err := c.Recv(ctx, &r); err != nil {
				t.Fatalf("child: %v (exit: %v)", err, p.Wait())
			}
			res, err := listPid(ctx, r.Tracker)
			if err != nil {
				t.Fatal(err)
			}
			var listed []string
			for _, x := range res {
				listed = append(listed, strings.TrimPrefix(x.Name, "/"))
			}
			slices.Sort(names)
			if !slices.Equal(listed, names) {
				t.Errorf("tracker lists %v, want %v", listed, names)
			}
			p.Kill()
			p.Wait()
			waitExit(t, r.Tracker)
			for _, n := range names {
				if exists(n) {
					t.Errorf("%s leaked", n)
				}
			}
		})
	}
}
