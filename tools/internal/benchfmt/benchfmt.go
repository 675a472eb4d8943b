// SPDX-License-Identifier: Apache-2.0

// Package benchfmt turns `go test -bench` output into the baseline kit's
// JSON (../shared/bench/README.md), so that report.py can put multiproc's
// figures beside CPython's and the floors.
//
// Convention: a benchmark that stands for a kit key is a sub-benchmark of a
// Benchmark function whose sub-name is the key, e.g.
// BenchmarkKit/pipe.rtt.bytes16, and it reports exactly one metric in one of
// the kit's units (us, ms, ns, GB/s, items/s, tasks/s, ops/s) with
// b.ReportMetric.
package benchfmt

import (
	"bufio"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Units are the kit's units; lower is better for times, higher for rates.
var Units = map[string]string{
	"us": "lower", "ms": "lower", "ns": "lower",
	"GB/s": "higher", "items/s": "higher", "tasks/s": "higher", "ops/s": "higher",
}

// Result is one key's figures in the kit's JSON shape.
type Result struct {
	Key    string    `json:"key"`
	Desc   string    `json:"desc"`
	Unit   string    `json:"unit"`
	Better string    `json:"better"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
	Iters  int64     `json:"iters"`
}

// Suite is the document report.py reads.
type Suite struct {
	Suite   string   `json:"suite"`
	Results []Result `json:"results"`
}

var lineRE = regexp.MustCompile(`^Benchmark[^/\s]+/(\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// Parse reads `go test -bench` output and gathers, for each key, the
// values of its kit metric across repeated runs (-count). tag, if set, is
// appended to every key as "@tag".
func Parse(r io.Reader, tag string, descs map[string]string) []Result {
	byKey := map[string]*Result{}
	var order []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := lineRE.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		key := m[1]
		iters, _ := strconv.ParseInt(m[2], 10, 64)
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			better, ok := Units[f[i+1]]
			if !ok {
				continue
			}
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			k := key
			if tag != "" {
				k += "@" + tag
			}
			res := byKey[k]
			if res == nil {
				res = &Result{Key: k, Unit: f[i+1], Better: better, Desc: descs[key]}
				byKey[k] = res
				order = append(order, k)
			}
			res.Values = append(res.Values, v)
			res.Iters += iters
			break
		}
	}
	out := make([]Result, 0, len(order))
	for _, k := range order {
		r := byKey[k]
		vals := slices.Clone(r.Values)
		sort.Float64s(vals)
		r.Min, r.Max = vals[0], vals[len(vals)-1]
		mid := len(vals) / 2
		if len(vals)%2 == 1 {
			r.Median = vals[mid]
		} else {
			r.Median = (vals[mid-1] + vals[mid]) / 2
		}
		if n := int64(len(r.Values)); n > 0 {
			r.Iters /= n
		}
		out = append(out, *r)
	}
	return out
}
