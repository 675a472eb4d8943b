// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/semver"
)

// Prefix is the import path every module of the set lives under.
const Prefix = "github.com/multiproc/multiproc/"

// Module is one line of modules.txt.
type Module struct {
	Dir      string   // directory under the root, also the path under Prefix
	Imports  []string // modules it may import directly; nil with Any
	Any      bool     // "*": may import every module
	TestOnly bool     // imported by tests (and *test packages) only
}

// Path is the module path.
func (m Module) Path() string { return Prefix + m.Dir }

// Set is the module set: the table and the version.
type Set struct {
	Root    string
	Version string
	Modules []Module // in the table's order
}

func loadSet(root string) (*Set, error) {
	s := &Set{Root: root}
	v, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		return nil, err
	}
	s.Version = strings.TrimSpace(string(v))
	if !validVersion(s.Version) {
		return nil, fmt.Errorf("VERSION: %q is not a release version vMAJOR.MINOR.PATCH", s.Version)
	}
	data, err := os.ReadFile(filepath.Join(root, "modules.txt"))
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("modules.txt:%d: want a module and what it may import (\"-\" for none)", n)
		}
		m := Module{Dir: f[0]}
		rest := f[1:]
		if rest[len(rest)-1] == "test-only" {
			m.TestOnly, rest = true, rest[:len(rest)-1]
		}
		for _, d := range rest {
			switch d {
			case "-":
			case "*":
				m.Any = true
			default:
				m.Imports = append(m.Imports, d)
			}
		}
		if s.find(m.Dir) != nil {
			return nil, fmt.Errorf("modules.txt:%d: %s is listed twice", n, m.Dir)
		}
		s.Modules = append(s.Modules, m)
	}
	for _, m := range s.Modules {
		for _, d := range m.Imports {
			if s.find(d) == nil {
				return nil, fmt.Errorf("modules.txt: %s may import %s, which is not in the table", m.Dir, d)
			}
		}
	}
	return s, nil
}

// validVersion reports whether v is a release version such as v0.1.0.
func validVersion(v string) bool {
	return semver.IsValid(v) && semver.Canonical(v) == v && semver.Prerelease(v) == "" && semver.Build(v) == ""
}

func (s *Set) find(dir string) *Module {
	for i := range s.Modules {
		if s.Modules[i].Dir == dir {
			return &s.Modules[i]
		}
	}
	return nil
}

// present reports whether the module's directory holds a go.mod (a table
// entry may be written ahead of its module).
func (s *Set) present(m Module) bool {
	_, err := os.Stat(filepath.Join(s.Root, m.Dir, "go.mod"))
	return err == nil
}

// Present is every module of the table whose go.mod exists, sorted.
func (s *Set) Present() []Module {
	var out []Module
	for _, m := range s.Modules {
		if s.present(m) {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b Module) int { return strings.Compare(a.Dir, b.Dir) })
	return out
}

// closure is every module dir may import, directly or through others,
// sorted, without dir itself and without test-only modules.
func (s *Set) closure(dir string) ([]string, error) {
	if s.find(dir) == nil {
		return nil, fmt.Errorf("module %s is not in modules.txt", dir)
	}
	seen := map[string]bool{}
	var walk func(string)
	walk = func(d string) {
		m := s.find(d)
		deps := m.Imports
		if m.Any {
			deps = nil
			for _, o := range s.Modules {
				if !o.TestOnly {
					deps = append(deps, o.Dir)
				}
			}
		}
		for _, x := range deps {
			if !seen[x] {
				seen[x] = true
				walk(x)
			}
		}
	}
	walk(dir)
	delete(seen, dir)
	var out []string
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out, nil
}

// owner is the module of the set that holds import path p, or "".
func (s *Set) owner(p string) string {
	rest, ok := strings.CutPrefix(p, Prefix)
	if !ok {
		return ""
	}
	best := ""
	for _, m := range s.Modules {
		if (rest == m.Dir || strings.HasPrefix(rest, m.Dir+"/")) && len(m.Dir) > len(best) {
			best = m.Dir
		}
	}
	return best
}

func sortStrings(s []string) { slices.Sort(s) }
