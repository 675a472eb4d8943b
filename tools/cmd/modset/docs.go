// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const (
	docsFile  = "docs/architecture.md"
	docsBegin = "<!-- generated from modules.txt by make docs-deps; edit the table there -->"
	docsEnd   = "<!-- end of generated table -->"
)

// docsTable renders the table for readers.
func (s *Set) docsTable() string {
	var b strings.Builder
	b.WriteString(docsBegin + "\n```\n")
	for _, m := range s.Modules {
		deps := strings.Join(m.Imports, ", ")
		switch {
		case m.Any:
			deps = "anything"
		case m.TestOnly:
			deps = "(test-only: imported by tests, never by a library package)"
		case deps == "":
			deps = "(no multiproc module)"
		}
		fmt.Fprintf(&b, "%-16s -> %s\n", m.Dir, deps)
	}
	b.WriteString("```\n" + docsEnd)
	return b.String()
}

func (s *Set) writeDocs(check bool) error {
	path := filepath.Join(s.Root, docsFile)
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	text := string(old)
	i, j := strings.Index(text, docsBegin), strings.Index(text, docsEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no generated table (%q ... %q)", docsFile, docsBegin, docsEnd)
	}
	want := text[:i] + s.docsTable() + text[j+len(docsEnd):]
	if want == text {
		return nil
	}
	if check {
		return fmt.Errorf("%s: the dependency table disagrees with modules.txt (run make docs-deps)", docsFile)
	}
	return os.WriteFile(path, []byte(want), 0o644)
}
