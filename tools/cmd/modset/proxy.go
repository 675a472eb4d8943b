// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

// writeProxy writes, under dir, what a module proxy (GOPROXY protocol) would
// serve for every module of the set once its tags <module>/<version> are
// pushed: @v/list, @v/<version>.info, .mod and .zip. A zip holds what git
// would hold at the tag: the files under the module's directory that are
// tracked or would be (untracked and not ignored), less nested modules, built
// with golang.org/x/mod/zip, the package the go command and the proxy use.
// GOPROXY=file://<dir> then serves it.
func (s *Set) writeProxy(dir string) error {
	files, err := git(s.Root, "ls-files", "--cached", "--others", "--exclude-standard")
	if err != nil {
		return err
	}
	stamp := time.Now().UTC()
	if t, err := git(s.Root, "log", "-1", "--format=%cI"); err == nil {
		if ct, err := time.Parse(time.RFC3339, t); err == nil {
			stamp = ct.UTC()
		}
	}
	for _, m := range s.Present() {
		mv := module.Version{Path: m.Path(), Version: s.Version}
		esc, err := module.EscapePath(mv.Path)
		if err != nil {
			return err
		}
		vdir := filepath.Join(dir, esc, "@v")
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return err
		}
		var zfiles []modzip.File
		for _, f := range strings.Split(files, "\n") {
			rel, ok := strings.CutPrefix(f, m.Dir+"/")
			if !ok {
				continue
			}
			full := filepath.Join(s.Root, filepath.FromSlash(f))
			if fi, err := os.Lstat(full); err != nil || !fi.Mode().IsRegular() {
				continue // deleted in the work tree, or not a plain file
			}
			zfiles = append(zfiles, zipFile{rel: rel, full: full})
		}
		zf, err := os.Create(filepath.Join(vdir, s.Version+".zip"))
		if err != nil {
			return err
		}
		if err := modzip.Create(zf, mv, zfiles); err != nil {
			zf.Close()
			return fmt.Errorf("zip of %s: %w", mv, err)
		}
		if err := zf.Close(); err != nil {
			return err
		}
		gomod, err := os.ReadFile(filepath.Join(s.Root, m.Dir, "go.mod"))
		if err != nil {
			return err
		}
		info, _ := json.Marshal(struct {
			Version string
			Time    time.Time
		}{s.Version, stamp})
		for name, data := range map[string][]byte{
			s.Version + ".mod":  gomod,
			s.Version + ".info": info,
			"list":              []byte(s.Version + "\n"),
		} {
			if err := os.WriteFile(filepath.Join(vdir, name), data, 0o644); err != nil {
				return err
			}
		}
		fmt.Printf("proxy: %s %s (%d files)\n", mv.Path, mv.Version, len(zfiles))
	}
	return nil
}

type zipFile struct{ rel, full string }

func (f zipFile) Path() string                 { return f.rel }
func (f zipFile) Lstat() (os.FileInfo, error)  { return os.Lstat(f.full) }
func (f zipFile) Open() (io.ReadCloser, error) { return os.Open(f.full) }
