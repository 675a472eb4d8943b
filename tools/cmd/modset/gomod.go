// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

const (
	blockBegin = "// --- replaces generated from modules.txt (make gomod); edit the table there ---"
	blockEnd   = "// --- end of generated replaces ---"
	forbidden  = "FORBIDDEN_DEPENDENCY"
)

var (
	// A generated block, under its current or any earlier heading.
	blockRE = regexp.MustCompile(`(?s)// --- replaces generated [^\n]*---\n.*?` + regexp.QuoteMeta(blockEnd))
	// A requirement of a sibling: the path, then its version.
	requireRE = regexp.MustCompile(`(?m)^(\t|require )(` + regexp.QuoteMeta(Prefix) + `[A-Za-z0-9_./-]+) (v[^\s]+)`)
)

// replaceBlock is the replace block of module m's go.mod. A module of the set
// that m may use is replaced by its directory at every version, so builds
// with GOWORK=off (and go mod tidy) never look for a sibling on the network;
// one it may not use is replaced by a directory that does not exist, so such
// a build fails loudly. Consumers ignore these lines: Go applies only the
// main module's replaces.
func (s *Set) replaceBlock(m Module) (string, error) {
	allowed, err := s.closure(m.Dir)
	if err != nil {
		return "", err
	}
	ok := map[string]bool{}
	for _, d := range allowed {
		ok[d] = true
	}
	for _, o := range s.Modules {
		if o.TestOnly {
			ok[o.Dir] = true
		}
	}
	up := strings.Repeat("../", strings.Count(m.Dir, "/")+1)
	var b strings.Builder
	b.WriteString(blockBegin + "\nreplace (\n")
	for _, o := range sortedDirs(s.Modules) {
		if o == m.Dir {
			continue
		}
		target := up + forbidden
		if ok[o] {
			target = up + o
		}
		fmt.Fprintf(&b, "\t%s%s => %s\n", Prefix, o, target)
	}
	b.WriteString(")\n\n" + blockEnd)
	return b.String(), nil
}

func sortedDirs(mods []Module) []string {
	var out []string
	for _, m := range mods {
		out = append(out, m.Dir)
	}
	sortStrings(out)
	return out
}

// goMod is module m's go.mod as the table and the version want it.
func (s *Set) goMod(m Module, text string) (string, error) {
	block, err := s.replaceBlock(m)
	if err != nil {
		return "", err
	}
	if blockRE.MatchString(text) {
		text = blockRE.ReplaceAllLiteralString(text, block)
	} else {
		text = strings.TrimRight(text, "\n") + "\n\n" + block + "\n"
	}
	return requireRE.ReplaceAllString(text, "${1}${2} "+s.Version), nil
}

func (s *Set) writeGoMods(check bool) error {
	var drift []string
	for _, m := range s.Present() {
		path := filepath.Join(s.Root, m.Dir, "go.mod")
		old, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		want, err := s.goMod(m, string(old))
		if err != nil {
			return err
		}
		if want == string(old) {
			continue
		}
		if check {
			drift = append(drift, path)
			continue
		}
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			return err
		}
	}
	if len(drift) > 0 {
		return fmt.Errorf("these go.mod files disagree with modules.txt or VERSION (run make gomod): %s", strings.Join(drift, " "))
	}
	return nil
}
