// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/multiproc/multiproc/tools/internal/benchfmt"
	"github.com/spf13/cobra"
)

type benchOpts struct {
	quick     bool
	count     int
	benchtime string
	out       string
	kit       string
	noCPython bool
	noPin     bool
	run       string
}

func benchCmd() *cobra.Command {
	var o benchOpts
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run multiproc's benchmarks beside CPython's multiprocessing and the floors",
		Long: `bench runs every multiproc benchmark that stands for a shared key
(start.spawn, pipe.rtt.bytes16, pool.map.chunk1, ...), unpinned and, for
latencies, pinned to one CPU (keys ending in @same), and writes golib.json.
In the same invocation it runs the repository's CPython benchmark
(tools/bench/cpython_bench.py, python3's multiprocessing under the same keys)
and its floors (tools/cmd/floors, the same operations on raw system calls),
and prints one table with the three side by side. --kit DIR runs an external
baseline kit's run_all.sh instead, as a cross-check.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd.OutOrStdout(), cmd.ErrOrStderr(), o) },
	}
	f := cmd.Flags()
	f.BoolVar(&o.quick, "quick", false, "short run: fewer repeats and iterations (a smoke test, not figures to quote)")
	f.IntVar(&o.count, "count", 5, "repeats of each benchmark (the median is reported)")
	f.StringVar(&o.benchtime, "benchtime", "", "go test -benchtime (default 1s, 200ms with --quick)")
	f.StringVar(&o.out, "out", "bench-out", "directory for golib.json and the kit's results")
	f.StringVar(&o.kit, "kit", "", "run this baseline kit's run_all.sh for CPython and the floors, as a cross-check (default: $MP_BENCH_KIT; none: the repository's own)")
	f.BoolVar(&o.noCPython, "no-cpython", false, "do not run CPython or the floors, only multiproc's benchmarks")
	f.BoolVar(&o.noPin, "no-pin", false, "skip the pinned (@same) latency pass")
	f.StringVar(&o.run, "run", "", "only keys matching this regexp (go test -bench syntax, e.g. 'pipe')")
	return cmd
}

// isLatencyKey reports whether a key is a latency, which mp bench also
// measures pinned to one CPU.
func isLatencyKey(key string) bool {
	return strings.Contains(key, "rtt") || strings.Contains(key, "pingpong")
}

// repoRoot finds the directory holding go.work.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOWORK: %w", err)
	}
	w := strings.TrimSpace(string(out))
	if w == "" || w == "off" {
		return "", errors.New("run mp bench inside the multiproc repository (no go.work found)")
	}
	return filepath.Dir(w), nil
}

// kitPackages lists the packages that define a BenchmarkKit function.
func kitPackages(root string) ([]string, error) {
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{.Dir}}", "github.com/multiproc/multiproc/...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		// the pattern does not span modules in every go version; list per module
		mods, merr := exec.Command(filepath.Join(root, "scripts/modules.sh")).Output()
		if merr != nil {
			return nil, fmt.Errorf("go list: %w", err)
		}
		var args []string
		for _, m := range strings.Fields(string(mods)) {
			args = append(args, "github.com/multiproc/multiproc/"+m+"/...")
		}
		cmd = exec.Command("go", append([]string{"list", "-f", "{{.ImportPath}} {{.Dir}}"}, args...)...)
		cmd.Dir = root
		if out, err = cmd.Output(); err != nil {
			return nil, fmt.Errorf("go list: %w", err)
		}
	}
	var pkgs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(f[1], "*_test.go"))
		for _, file := range files {
			b, _ := os.ReadFile(file)
			if bytes.Contains(b, []byte("func BenchmarkKit(")) {
				pkgs = append(pkgs, f[0])
				break
			}
		}
	}
	return pkgs, nil
}

func runBench(stdout, stderr io.Writer, o benchOpts) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if o.quick {
		if o.count == 5 {
			o.count = 3
		}
		if o.benchtime == "" {
			o.benchtime = "200ms"
		}
	}
	if o.benchtime == "" {
		o.benchtime = "1s"
	}
	pkgs, err := kitPackages(root)
	if err != nil {
		return err
	}
	if len(pkgs) == 0 {
		return errors.New("no package defines BenchmarkKit")
	}
	out, err := filepath.Abs(o.out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	pattern := "^BenchmarkKit$"
	if o.run != "" {
		// In parentheses: go test splits a -bench pattern at a top-level
		// "|" before it splits it at "/", so "cluster|jetstream" alone
		// would look for a top-level benchmark named jetstream.
		pattern += "/(" + o.run + ")"
	}
	goTest := func(pin bool, bench string) ([]byte, error) {
		args := []string{"test", "-run=^$", "-bench=" + bench, "-count", fmt.Sprint(o.count), "-benchtime", o.benchtime, "-timeout", "60m"}
		args = append(args, pkgs...)
		name := "go"
		if pin {
			args = append([]string{"-c", "0", "go"}, args...)
			name = "taskset"
		}
		fmt.Fprintf(stderr, "== %s %s\n", name, strings.Join(args, " "))
		cmd := exec.Command(name, args...)
		cmd.Dir = root
		var buf bytes.Buffer
		cmd.Stdout = io.MultiWriter(&buf, stderr)
		cmd.Stderr = stderr
		err := cmd.Run()
		return buf.Bytes(), err
	}
	raw, err := goTest(false, pattern)
	if err != nil {
		return fmt.Errorf("benchmarks failed: %w", err)
	}
	results := benchfmt.Parse(bytes.NewReader(raw), "", nil)
	if _, err := exec.LookPath("taskset"); err == nil && !o.noPin {
		lat := "^BenchmarkKit$/" + "(.*rtt.*|.*pingpong.*)"
		if o.run != "" {
			// Only the latency keys of those that ran: the others (a
			// throughput run of a minute, a failover) are not pinned.
			var keys []string
			for _, r := range results {
				if isLatencyKey(r.Key) {
					keys = append(keys, regexp.QuoteMeta(r.Key))
				}
			}
			lat = ""
			if len(keys) > 0 {
				lat = "^BenchmarkKit$/^(" + strings.Join(keys, "|") + ")$"
			}
		}
		if lat != "" {
			raw, err := goTest(true, lat)
			if err != nil {
				return fmt.Errorf("pinned benchmarks failed: %w", err)
			}
			for _, r := range benchfmt.Parse(bytes.NewReader(raw), "same", nil) {
				if isLatencyKey(r.Key) {
					results = append(results, r)
				}
			}
		}
	}
	golib := filepath.Join(out, "golib.json")
	b, _ := json.MarshalIndent(benchfmt.Suite{Suite: "golib", Results: results}, "", "  ")
	if err := os.WriteFile(golib, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "== wrote %s (%d keys)\n", golib, len(results))
	kitOut, source, err := baselines(root, out, o, stderr)
	if err != nil {
		return err
	}
	paths, _ := filepath.Glob(filepath.Join(kitOut, "*.json"))
	paths = append(paths, golib)
	suites, err := benchfmt.LoadSuites(paths...)
	if err != nil {
		return err
	}
	rows := benchfmt.Rows(suites)
	var md bytes.Buffer
	fmt.Fprintf(&md, "%s\n\n", source)
	benchfmt.WriteTable(&md, rows)
	if err := os.WriteFile(filepath.Join(out, "report.md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	rj, _ := json.MarshalIndent(rows, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "report.json"), rj, 0o644); err != nil {
		return err
	}
	svg, err := os.Create(filepath.Join(out, "ratios.svg"))
	if err != nil {
		return err
	}
	if err := benchfmt.WriteSVG(svg, rows, "multiproc speed-up over CPython multiprocessing (log scale)"); err != nil {
		svg.Close()
		return err
	}
	svg.Close()
	stdout.Write(md.Bytes())
	fmt.Fprintf(stderr, "== wrote %s/{golib.json,report.md,report.json,ratios.svg}\n", out)
	return nil
}
