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
		Long: `bench runs every multiproc benchmark that stands for a key of the baseline
kit (../shared/bench), unpinned and, for latencies, pinned to one CPU (keys
ending in @same). It writes golib.json in the kit's format; when python3 and
the kit are present it then runs the kit's CPython and floor benchmarks in the
same invocation and prints one table with the three side by side.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd.OutOrStdout(), cmd.ErrOrStderr(), o) },
	}
	f := cmd.Flags()
	f.BoolVar(&o.quick, "quick", false, "short run: fewer repeats and iterations (a smoke test, not figures to quote)")
	f.IntVar(&o.count, "count", 5, "repeats of each benchmark (the median is reported)")
	f.StringVar(&o.benchtime, "benchtime", "", "go test -benchtime (default 1s, 200ms with --quick)")
	f.StringVar(&o.out, "out", "bench-out", "directory for golib.json and the kit's results")
	f.StringVar(&o.kit, "kit", "", "the baseline kit's directory (default: $MP_BENCH_KIT or ../shared/bench)")
	f.BoolVar(&o.noCPython, "no-cpython", false, "do not run the CPython kit, only multiproc's benchmarks")
	f.BoolVar(&o.noPin, "no-pin", false, "skip the pinned (@same) latency pass")
	f.StringVar(&o.run, "run", "", "only keys matching this regexp (go test -bench syntax, e.g. 'pipe')")
	return cmd
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
		pattern += "/" + o.run
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
			lat = pattern
		}
		raw, err := goTest(true, lat)
		if err != nil {
			return fmt.Errorf("pinned benchmarks failed: %w", err)
		}
		for _, r := range benchfmt.Parse(bytes.NewReader(raw), "same", nil) {
			if strings.Contains(r.Key, "rtt") || strings.Contains(r.Key, "pingpong") {
				results = append(results, r)
			}
		}
	}
	golib := filepath.Join(out, "golib.json")
	b, _ := json.MarshalIndent(benchfmt.Suite{Suite: "golib", Results: results}, "", "  ")
	if err := os.WriteFile(golib, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "== wrote %s (%d keys)\n", golib, len(results))
	kit := o.kit
	if kit == "" {
		kit = os.Getenv("MP_BENCH_KIT")
	}
	if kit == "" {
		kit = filepath.Join(root, "..", "shared", "bench")
	}
	runAll := filepath.Join(kit, "run_all.sh")
	_, kitErr := os.Stat(runAll)
	_, pyErr := exec.LookPath("python3")
	kitOut := filepath.Join(out, "kit")
	source := "CPython and floors measured in this run"
	if o.noCPython || kitErr != nil || pyErr != nil {
		if !o.noCPython {
			fmt.Fprintf(stderr, "== CPython kit not run (kit %s: %v; python3: %v)\n", kit, kitErr, pyErr)
		}
		// Fall back to the kit's stored baseline, and say so: figures from
		// another run are only indicative.
		kitOut = filepath.Join(kit, "results", "baseline")
		source = "CPython and floors from the kit's STORED baseline (" + kitOut + "), not this run: indicative only"
	} else {
		args := []string{runAll}
		if o.quick {
			args = append(args, "--quick")
		}
		logPath := filepath.Join(out, "kit.log")
		fmt.Fprintf(stderr, "== CPython kit and floors: bash %s (log: %s, takes minutes)\n", strings.Join(args, " "), logPath)
		logf, err := os.Create(logPath)
		if err != nil {
			return err
		}
		cmd := exec.Command("bash", args...)
		cmd.Env = append(os.Environ(), "RESULTS_DIR="+kitOut)
		cmd.Stdout = logf
		cmd.Stderr = io.MultiWriter(logf, stderr)
		err = cmd.Run()
		logf.Close()
		if err != nil {
			return fmt.Errorf("baseline kit failed (see %s): %w", logPath, err)
		}
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
