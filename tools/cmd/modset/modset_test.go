// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testSet writes a small repository: VERSION, modules.txt, and a go.mod for
// every module named in present.
func testSet(t *testing.T, table string, present ...string) *Set {
	t.Helper()
	root := t.TempDir()
	write := func(name, text string) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("VERSION", "v0.3.0\n")
	write("modules.txt", table)
	for _, m := range present {
		write(m+"/go.mod", "module "+Prefix+m+"\n\ngo 1.26.0\n")
	}
	s, err := loadSet(root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const table = `# comment
proto     -
ipc       proto
process   ipc proto   # a comment after a line
pool      process
cluster   pool
tools     *
internal/mptest - test-only
`

func TestClosure(t *testing.T) {
	s := testSet(t, table, "proto", "ipc", "process", "pool", "tools", "internal/mptest")
	for mod, want := range map[string][]string{
		"proto":   nil,
		"pool":    {"ipc", "process", "proto"},
		"cluster": {"ipc", "pool", "process", "proto"},
		"tools":   {"cluster", "ipc", "pool", "process", "proto"},
	} {
		got, err := s.closure(mod)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("closure(%s) = %v, %v; want %v", mod, got, err, want)
		}
	}
	if _, err := s.closure("nope"); err == nil {
		t.Error("closure of a module not in the table: no error")
	}
}

// cluster is in the table but has no directory: it is skipped, and its
// replace lines are written all the same.
func TestPresentSkipsMissingDirectories(t *testing.T) {
	s := testSet(t, table, "proto", "ipc", "process", "pool", "tools", "internal/mptest")
	var dirs []string
	for _, m := range s.Present() {
		dirs = append(dirs, m.Dir)
	}
	if want := []string{"internal/mptest", "ipc", "pool", "process", "proto", "tools"}; !slices.Equal(dirs, want) {
		t.Errorf("Present = %v, want %v", dirs, want)
	}
	block, err := s.replaceBlock(*s.find("tools"))
	if err != nil || !strings.Contains(block, Prefix+"cluster => ../cluster\n") {
		t.Errorf("tools' block lacks cluster's replace: %v\n%s", err, block)
	}
}

func TestGoMod(t *testing.T) {
	s := testSet(t, table, "pool", "internal/mptest")
	in := "module " + Prefix + "pool\n\ngo 1.26.0\n\nrequire (\n" +
		"\t" + Prefix + "ipc v0.0.0-00010101000000-000000000000\n" +
		"\t" + Prefix + "internal/mptest v0.1.0\n" +
		"\tgo.uber.org/zap v1.28.0\n)\n\nrequire " + Prefix + "proto v0.2.0 // indirect\n"
	got, err := s.goMod(*s.find("pool"), in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\t" + Prefix + "ipc v0.3.0\n",
		"\t" + Prefix + "internal/mptest v0.3.0\n",
		"require " + Prefix + "proto v0.3.0 // indirect\n",
		"\tgo.uber.org/zap v1.28.0\n", // not a sibling: untouched
		"\t" + Prefix + "process => ../process\n",
		"\t" + Prefix + "internal/mptest => ../internal/mptest\n", // test-only: allowed everywhere
		"\t" + Prefix + "tools => ../FORBIDDEN_DEPENDENCY\n",
		"\t" + Prefix + "cluster => ../FORBIDDEN_DEPENDENCY\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("go.mod lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, Prefix+"pool =>") {
		t.Errorf("go.mod replaces its own module:\n%s", got)
	}
	again, _ := s.goMod(*s.find("pool"), got)
	if again != got {
		t.Errorf("a second pass changed the go.mod:\n%s\nthen\n%s", got, again)
	}
	mp, _ := s.goMod(*s.find("internal/mptest"), "module "+Prefix+"internal/mptest\n")
	if !strings.Contains(mp, Prefix+"proto => ../../FORBIDDEN_DEPENDENCY\n") {
		t.Errorf("a module two levels down gets ../../ paths:\n%s", mp)
	}
}

func TestBadTables(t *testing.T) {
	for name, text := range map[string]string{
		"unknown import": "ipc proto\n",
		"twice":          "proto -\nproto -\n",
		"no imports":     "proto\n",
	} {
		root := t.TempDir()
		os.WriteFile(filepath.Join(root, "VERSION"), []byte("v0.1.0\n"), 0o644)
		os.WriteFile(filepath.Join(root, "modules.txt"), []byte(text), 0o644)
		if _, err := loadSet(root); err == nil {
			t.Errorf("%s: loadSet accepted %q", name, text)
		}
	}
	for _, v := range []string{"0.1.0", "v1.2", "v1.2.3-rc.1", "v1.2.3+meta"} {
		if validVersion(v) {
			t.Errorf("validVersion(%q) = true", v)
		}
	}
	s := testSet(t, table)
	if err := s.setVersion("v1.0"); err == nil {
		t.Error("setVersion(v1.0): no error")
	}
}

func TestDocsTable(t *testing.T) {
	s := testSet(t, table, "proto")
	doc := filepath.Join(s.Root, docsFile)
	os.MkdirAll(filepath.Dir(doc), 0o755)
	os.WriteFile(doc, []byte("# A\n\n"+docsBegin+"\nold\n"+docsEnd+"\n\nafter\n"), 0o644)
	if err := s.writeDocs(true); err == nil {
		t.Error("-check passed on a stale table")
	}
	if err := s.writeDocs(false); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(doc)
	for _, want := range []string{"pool             -> process\n", "tools            -> anything\n", "internal/mptest  -> (test-only", "\n\nafter\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("docs lack %q:\n%s", want, b)
		}
	}
	if err := s.writeDocs(true); err != nil {
		t.Errorf("-check after writing: %v", err)
	}
}

func TestOwner(t *testing.T) {
	s := testSet(t, table)
	for path, want := range map[string]string{
		Prefix + "pool":                  "pool",
		Prefix + "process/starter":       "process",
		Prefix + "internal/mptest":       "internal/mptest",
		"github.com/other/pool":          "",
		Prefix + "processx/whatever":     "",
		Prefix + "internal/mptest/inner": "internal/mptest",
	} {
		if got := s.owner(path); got != want {
			t.Errorf("owner(%s) = %q, want %q", path, got, want)
		}
	}
}
