// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

type listedPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// checkDeps compares every import of every present module, test files
// included, with the table. Workspace mode resolves any workspace module, so
// the forbidden replaces in each go.mod only bite with GOWORK=off; this check
// covers workspace mode too.
func (s *Set) checkDeps() error {
	var problems []string
	dirs, err := goModDirs(s.Root)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if s.find(d) == nil {
			problems = append(problems, fmt.Sprintf("module %s is not in the dependency table (modules.txt)", d))
		}
	}
	for _, m := range s.Present() {
		allowed, err := s.closure(m.Dir)
		if err != nil {
			return err
		}
		pkgs, err := listPackages(filepath.Join(s.Root, m.Dir))
		if err != nil {
			return fmt.Errorf("%s: %w", m.Dir, err)
		}
		for _, p := range pkgs {
			check := func(imp string, fromTest bool) {
				t := s.owner(imp)
				if t == "" || t == m.Dir {
					return
				}
				switch tm := s.find(t); {
				case tm.TestOnly:
					if !fromTest && !strings.HasSuffix(p.ImportPath, "test") {
						problems = append(problems, fmt.Sprintf("%s imports %s, a test-only module, outside its tests", p.ImportPath, imp))
					}
				case m.Any || slices.Contains(allowed, t):
				default:
					problems = append(problems, fmt.Sprintf("%s imports %s, but %s may not depend on %s (modules.txt)", p.ImportPath, imp, m.Dir, t))
				}
			}
			for _, imp := range p.Imports {
				check(imp, false)
			}
			for _, imp := range append(slices.Clone(p.TestImports), p.XTestImports...) {
				check(imp, true)
			}
		}
	}
	if len(problems) > 0 {
		return errors.New("check-deps:\n\t" + strings.Join(problems, "\n\t"))
	}
	fmt.Println("check-deps: dependency direction OK")
	return nil
}

func listPackages(dir string) ([]listedPackage, error) {
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports", "./...")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// goModDirs is the directory of every go.mod under root, as scripts/modules.sh
// finds them.
func goModDirs(root string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == ".bin" || d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && d.Name() == "go.mod" {
			rel, err := filepath.Rel(root, filepath.Dir(path))
			if err != nil {
				return err
			}
			dirs = append(dirs, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(dirs)
	return dirs, err
}
