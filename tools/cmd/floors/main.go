// SPDX-License-Identifier: Apache-2.0

// Command floors measures the physical floors of the operations multiproc
// performs, in plain Go on raw system calls, with none of multiproc's code:
// a re-exec of the binary, a round trip over a pipe or a socketpair, one-way
// throughput, a futex ping-pong between processes, a futex mutex, shared
// memory segments. mp bench (make bench) puts them beside multiproc's and
// CPython's figures: how far multiproc is from what the machine allows.
//
//	floors [-repeats N] [-scale F] [-only WORD,...] [-tag TAG] [-list]
//
// It prints a JSON suite ("suite": "limits") on stdout, under the keys the
// report reads (rtt.pipe.block, futex.pingpong, spawn.reexec.handshake, ...),
// and progress on stderr. Each figure is measured -repeats times; a repeat
// times many iterations and reports their mean. -tag appends "@TAG" to every
// key ("same" for a run pinned to one CPU with taskset -c 0).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	// A build for another system stops in linuxonly with one clear message.
	_ "github.com/multiproc/multiproc/internal/base/linuxonly"
)

// A floor is one measured key.
type floor struct {
	key, desc, unit, better string
	iters                   int // at scale 1
	// run performs n iterations and returns the figure in unit.
	run func(n int) (float64, error)
}

// result is one entry of the suite, in the shape mp bench reads.
type result struct {
	Key    string    `json:"key"`
	Desc   string    `json:"desc"`
	Unit   string    `json:"unit"`
	Better string    `json:"better"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
	Iters  int       `json:"iters"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		os.Exit(child(os.Args[2:]))
	}
	repeats := flag.Int("repeats", 5, "repeats of each figure (the median is reported)")
	scale := flag.Float64("scale", 1, "multiplies iteration counts (0.1 for a smoke run)")
	only := flag.String("only", "", "comma-separated words: only the keys that contain one")
	tag := flag.String("tag", "", `append "@TAG" to every key`)
	list := flag.Bool("list", false, "print the keys and exit")
	flag.Parse()
	if *repeats < 1 || *scale <= 0 {
		fmt.Fprintln(os.Stderr, "floors: -repeats must be at least 1 and -scale above 0")
		os.Exit(2)
	}
	words := strings.FieldsFunc(*only, func(r rune) bool { return r == ',' })
	var results []result
	start := time.Now()
	for _, f := range floors() {
		if *list {
			fmt.Printf("%-30s %s\n", f.key, f.desc)
			continue
		}
		if len(words) > 0 && !slices.ContainsFunc(words, func(w string) bool { return strings.Contains(f.key, w) }) {
			continue
		}
		n := max(1, int(float64(f.iters)**scale))
		if _, err := f.run(max(1, n/10)); err != nil { // warm-up
			fmt.Fprintf(os.Stderr, "floors: %s: %v\n", f.key, err)
			os.Exit(1)
		}
		r := result{Key: f.key, Desc: f.desc, Unit: f.unit, Better: f.better, Iters: n}
		if *tag != "" {
			r.Key += "@" + *tag
		}
		for range *repeats {
			v, err := f.run(n)
			if err != nil {
				fmt.Fprintf(os.Stderr, "floors: %s: %v\n", f.key, err)
				os.Exit(1)
			}
			r.Values = append(r.Values, v)
		}
		s := slices.Sorted(slices.Values(r.Values))
		r.Min, r.Max, r.Median = s[0], s[len(s)-1], s[len(s)/2]
		if len(s)%2 == 0 {
			r.Median = (s[len(s)/2-1] + s[len(s)/2]) / 2
		}
		fmt.Fprintf(os.Stderr, "  %-34s %12.4g %-8s [%.4g .. %.4g]\n", r.Key, r.Median, r.Unit, r.Min, r.Max)
		results = append(results, r)
	}
	if *list {
		return
	}
	host, _ := os.Hostname()
	out := map[string]any{"suite": "limits", "source": "tools/cmd/floors", "repeats": *repeats,
		"scale": *scale, "tag": *tag, "host": host, "wall_s": time.Since(start).Seconds(), "results": results}
	b, _ := json.MarshalIndent(out, "", " ")
	os.Stdout.Write(append(b, '\n'))
}
