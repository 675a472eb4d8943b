// SPDX-License-Identifier: Apache-2.0

package benchfmt

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	out := `goos: linux
BenchmarkKit/pipe.rtt.bytes16-2         	  100000	     10234 ns/op	        10.23 us	       0 B/op
BenchmarkKit/pipe.rtt.bytes16-2         	  120000	     9000 ns/op	        9.00 us
BenchmarkKit/pipe.rtt.bytes16-2         	  110000	     9500 ns/op	        9.50 us
BenchmarkKit/pipe.tput.1MiB-2           	    1000	   1000000 ns/op	 1048.58 MB/s	         3.10 GB/s
BenchmarkOther-2                        	    1000	      1000 ns/op
PASS`
	got := Parse(strings.NewReader(out), "same", map[string]string{"pipe.rtt.bytes16": "rtt"})
	want := []Result{
		{Key: "pipe.rtt.bytes16@same", Desc: "rtt", Unit: "us", Better: "lower", Median: 9.5, Min: 9, Max: 10.23,
			Values: []float64{10.23, 9, 9.5}, Iters: 110000},
		{Key: "pipe.tput.1MiB@same", Unit: "GB/s", Better: "higher", Median: 3.1, Min: 3.1, Max: 3.1,
			Values: []float64{3.1}, Iters: 1000},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Parse (-want +got):\n%s", d)
	}
}

func TestRows(t *testing.T) {
	suites := map[string]map[string]Result{
		"cpython": {"pipe.rtt.bytes16": {Key: "pipe.rtt.bytes16", Unit: "us", Better: "lower", Median: 60}},
		"golib":   {"pipe.rtt.bytes16": {Key: "pipe.rtt.bytes16", Unit: "us", Better: "lower", Median: 12}},
		"limits": {
			"rtt.pipe.block":       {Unit: "us", Better: "lower", Median: 10},
			"rtt.socketpair.block": {Unit: "us", Better: "lower", Median: 14},
		},
	}
	got := Rows(suites)
	want := []Row{{Op: "Pipe round trip, 16 B", Key: "pipe.rtt.bytes16", Unit: "us", CPython: 60, Multi: 12,
		Floor: 10, FloorKey: "rtt.pipe.block", SpeedUp: 5, OverFloor: 1.2}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Rows (-want +got):\n%s", d)
	}
	var svg strings.Builder
	if err := WriteSVG(&svg, got, "t"); err != nil || !strings.Contains(svg.String(), "5.00x") {
		t.Errorf("WriteSVG: %v\n%s", err, svg.String())
	}
}

// TestRowsOwnFloor: a floor multiproc measures itself (memcpy) is found in
// the golib suite when the kit's limits do not have it.
func TestRowsOwnFloor(t *testing.T) {
	suites := map[string]map[string]Result{
		"golib": {
			"queue.tput.big": {Key: "queue.tput.big", Unit: "GB/s", Better: "higher", Median: 5},
			"memcpy":         {Key: "memcpy", Unit: "GB/s", Better: "higher", Median: 20},
		},
	}
	want := []Row{{Op: "Queue 1 -> 1, 1 MiB []byte items, GetBytes into a reused buffer", Key: "queue.tput.big", Unit: "GB/s", Multi: 5,
		Floor: 20, FloorKey: "memcpy", OverFloor: 4}}
	if d := cmp.Diff(want, Rows(suites)); d != "" {
		t.Errorf("Rows (-want +got):\n%s", d)
	}
}
