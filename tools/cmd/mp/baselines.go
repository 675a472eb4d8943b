// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/multiproc/multiproc/tools/internal/benchfmt"
)

// baselines runs CPython's multiprocessing and the floors under the shared
// keys, into a directory of suite files, and says where the figures come
// from. By default both are the repository's own: tools/bench/cpython_bench.py
// and tools/cmd/floors. An external kit (--kit or $MP_BENCH_KIT) runs instead,
// as a cross-check.
func baselines(root, out string, o benchOpts, stderr io.Writer) (dir, source string, err error) {
	kit := o.kit
	if kit == "" {
		kit = os.Getenv("MP_BENCH_KIT")
	}
	dir = filepath.Join(out, "baselines")
	if err := os.RemoveAll(dir); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	if o.noCPython {
		return dir, "CPython and floors not run (--no-cpython)", nil
	}
	if kit != "" {
		return dir, "CPython and floors from the kit " + kit + ", measured in this run", runKit(kit, dir, out, o, stderr)
	}
	repeats, scale := fmt.Sprint(o.count), "1"
	if o.quick {
		scale = "0.1"
	}
	_, tasksetErr := exec.LookPath("taskset")
	pin := tasksetErr == nil && !o.noPin

	// With --run, only the CPython keys and floors of the rows it selects
	// (the pinned passes: of its rows pinned to one CPU, "@same").
	var cpyOnly, floorOnly, cpySame, floorSame []string
	if o.run != "" {
		re, err := regexp.Compile(o.run)
		if err != nil {
			return "", "", fmt.Errorf("--run: %w", err)
		}
		for _, t := range benchfmt.Targets {
			if re.MatchString(t.Key) {
				cpyOnly = append(cpyOnly, strings.TrimSuffix(t.Key, "@same"))
				for _, f := range t.Floors {
					floorOnly = append(floorOnly, strings.TrimSuffix(f, "@same"))
				}
				if strings.HasSuffix(t.Key, "@same") {
					cpySame = append(cpySame, strings.TrimSuffix(t.Key, "@same"))
					for _, f := range t.Floors {
						floorSame = append(floorSame, strings.TrimSuffix(f, "@same"))
					}
				}
			}
		}
		if len(cpyOnly) == 0 {
			return dir, "no row of the table matches --run " + o.run + ": CPython and floors not run", nil
		}
	}
	only := func(flag string, words []string) []string {
		if len(words) == 0 {
			return nil
		}
		return []string{flag, strings.Join(words, ",")}
	}

	floors := filepath.Join(out, "floors")
	fmt.Fprintf(stderr, "== floors: building tools/cmd/floors\n")
	build := exec.Command("go", "build", "-o", floors, "github.com/multiproc/multiproc/tools/cmd/floors")
	build.Dir, build.Stdout, build.Stderr = root, stderr, stderr
	if err := build.Run(); err != nil {
		return "", "", fmt.Errorf("building the floors: %w", err)
	}
	runs := [][]string{append([]string{"limits.json", floors, "-repeats", repeats, "-scale", scale}, only("-only", floorOnly)...)}
	sameFloors, sameCPython := "rtt,futex", "pipe,signal,manager"
	if o.run != "" {
		sameFloors, sameCPython = strings.Join(floorSame, ","), strings.Join(cpySame, ",")
	}
	if pin && sameFloors != "" {
		runs = append(runs, []string{"limits_same.json", "taskset", "-c", "0", floors, "-repeats", repeats, "-scale", scale, "-only", sameFloors, "-tag", "same"})
	}
	source = "CPython (tools/bench/cpython_bench.py) and floors (tools/cmd/floors) measured in this run"
	if py, err := exec.LookPath("python3"); err != nil {
		fmt.Fprintln(stderr, "== python3 not found: the CPython column stays empty")
		source = "floors (tools/cmd/floors) measured in this run; no python3, so no CPython column"
	} else {
		script := filepath.Join(root, "tools", "bench", "cpython_bench.py")
		runs = append(runs, append([]string{"cpython.json", py, script, "--repeats", repeats, "--scale", scale}, only("--only", cpyOnly)...))
		if pin && sameCPython != "" {
			runs = append(runs, []string{"cpython_same.json", "taskset", "-c", "0", py, script, "--repeats", repeats, "--scale", scale, "--only", sameCPython, "--tag", "same"})
		}
	}
	for _, r := range runs {
		if err := runInto(filepath.Join(dir, r[0]), r[1], r[2:], stderr); err != nil {
			return "", "", err
		}
	}
	return dir, source, nil
}

// runInto runs name args with its standard output into the file path.
func runInto(path, name string, args []string, stderr io.Writer) error {
	fmt.Fprintf(stderr, "== %s %s > %s\n", name, strings.Join(args, " "), path)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, stderr
	err = cmd.Run()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return nil
}

// runKit runs an external baseline kit's run_all.sh into dir.
func runKit(kit, dir, out string, o benchOpts, stderr io.Writer) error {
	runAll := filepath.Join(kit, "run_all.sh")
	if _, err := os.Stat(runAll); err != nil {
		return fmt.Errorf("baseline kit: %w", err)
	}
	if _, err := exec.LookPath("python3"); err != nil {
		return errors.New("baseline kit: python3 not found")
	}
	args := []string{runAll}
	if o.quick {
		args = append(args, "--quick")
	}
	logPath := filepath.Join(out, "kit.log")
	fmt.Fprintf(stderr, "== baseline kit: bash %s (log: %s, takes minutes)\n", strings.Join(args, " "), logPath)
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("bash", args...)
	cmd.Env = append(os.Environ(), "RESULTS_DIR="+dir)
	cmd.Stdout = logf
	cmd.Stderr = io.MultiWriter(logf, stderr)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("baseline kit failed (see %s): %w", logPath, err)
	}
	return nil
}
