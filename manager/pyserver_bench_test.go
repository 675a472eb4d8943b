// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
)

// pyBenchDictGet is a CPython client timing d['k'] on a manager's dict:
// for each count n read from stdin it runs n gets and prints the mean in
// microseconds. With "cpython" as argv[3] it does the same against
// CPython's own SyncManager (started by the script), for comparison in
// the same run.
const pyBenchDictGet = `
import time
if len(sys.argv) > 3 and sys.argv[3] == 'cpython':
    cm = SyncManager(authkey=b'k'); cm.start()
    d = cm.dict(k=1)
else:
    d = m.dict(k=1)
for line in sys.stdin:
    n = int(line)
    t0 = time.perf_counter()
    for _ in range(n):
        d['k']
    print((time.perf_counter() - t0) / n * 1e6, flush=True)
`

// BenchmarkPyServer measures manager.py.dict.get: a CPython client's
// d['k'] on a dict served by a Go Server (ServePython on a unix socket,
// as a SyncManager.connect() client uses it). manager.py.dict.get.cpython
// is the same loop, in the same run, against CPython's own SyncManager
// (the kit's manager.dict.get). The metric "us" is the mean that Python
// measured around its loop.
func BenchmarkPyServer(b *testing.B) {
	mptest.Python(b)
	for _, target := range []string{"go", "cpython"} {
		name := "manager.py.dict.get"
		if target == "cpython" {
			name = "manager.py.dict.get.cpython"
		}
		b.Run(name, func(b *testing.B) { benchPyDictGet(b, target) })
	}
}

// benchPyDictGet runs pyBenchDictGet against a Go server ("go") or
// CPython's own manager ("cpython"); BenchmarkKit runs the first as the
// report's manager.py.dict.get.
func benchPyDictGet(b *testing.B, target string) {
	s := startGoPyServerOn(b, "unix")
	cmd := s.pyCmd(b, "", pyBenchDictGet, target)
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { in.Close(); cmd.Wait() }()
	r := bufio.NewReader(out)
	run := func(n int) float64 {
		fmt.Fprintln(in, n)
		line, err := r.ReadString('\n')
		if err != nil && err != io.EOF {
			b.Fatal(err)
		}
		us, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
		if err != nil {
			b.Fatalf("python said %q: %v", line, err)
		}
		return us
	}
	run(100) // warm up: connections made, code paths hot
	b.ResetTimer()
	us := run(b.N)
	b.ReportMetric(us, "us")
}
