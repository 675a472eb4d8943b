// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multiproc/multiproc/tools/internal/benchfmt"
)

// TestBenchCommand runs `mp bench` as a user would, on one cheap key, and
// checks the files it writes: golib.json in the kit's format, the table and
// the chart, with the repository's own CPython figure (tools/bench/
// cpython_bench.py, when python3 is there) and floor (tools/cmd/floors)
// beside multiproc's. It compiles every package's benchmarks, so -short
// skips it.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles every benchmark package")
	}
	bin := buildDemoBinary(t)
	out := t.TempDir()
	cmd := exec.Command(bin, "bench", "--quick", "--no-pin", "--count", "1",
		"--run", "lock.uncontended", "--out", out)
	stdout, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("mp bench: %v\n%s", err, msg)
	}
	b, err := os.ReadFile(filepath.Join(out, "golib.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s benchfmt.Suite
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("golib.json: %v", err)
	}
	if s.Suite != "golib" || len(s.Results) != 1 || s.Results[0].Key != "lock.uncontended" ||
		s.Results[0].Unit != "ns" || s.Results[0].Median <= 0 {
		t.Fatalf("golib.json = %+v, want one positive lock.uncontended figure in ns", s)
	}
	if !strings.Contains(string(stdout), "| Lock acquire+release, uncontended | ns |") {
		t.Errorf("table missing the lock row:\n%s", stdout)
	}
	var rows []benchfmt.Row
	if b, err := os.ReadFile(filepath.Join(out, "report.json")); err != nil || json.Unmarshal(b, &rows) != nil {
		t.Fatalf("report.json: %v", err)
	}
	_, noPython := exec.LookPath("python3")
	for _, r := range rows {
		if r.Key != "lock.uncontended" {
			continue
		}
		if r.Floor <= 0 || r.FloorKey != "lock.futexmutex.uncontended" {
			t.Errorf("lock row %+v: want the floor lock.futexmutex.uncontended from tools/cmd/floors", r)
		}
		if noPython == nil && r.CPython <= 0 {
			t.Errorf("lock row %+v: want CPython's figure from tools/bench/cpython_bench.py", r)
		}
	}
	for _, f := range []string{"report.md", "report.json", "ratios.svg"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}
