// SPDX-License-Identifier: Apache-2.0

//go:build linux

package shm

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
)

// handler is what the process package passes to a child.
type handler interface {
	MultiprocHandle() ([]*os.File, []byte, error)
}

// childCmd prepares a helper child that receives objs as the process
// package would hand them over: their files as ExtraFiles, and for each
// object "<nfiles>:<hex descriptor>" as an argument. The caller runs it;
// the files are closed when the test ends.
func childCmd(t *testing.T, helper string, objs ...handler) *exec.Cmd {
	t.Helper()
	var files []*os.File
	var args []string
	for _, o := range objs {
		fs, desc, err := o.MultiprocHandle()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fs...)
		args = append(args, fmt.Sprintf("%d:%s", len(fs), hex.EncodeToString(desc)))
	}
	t.Cleanup(func() { closeFiles(files) })
	cmd := mptest.HelperCmd(t, helper, args...)
	cmd.ExtraFiles = files
	return cmd
}

// runChild runs the helper with objs and returns its stdout.
func runChild(t *testing.T, helper string, objs ...handler) string {
	t.Helper()
	out, err := childCmd(t, helper, objs...).Output()
	if err != nil {
		t.Fatalf("child %s: %v (stdout %q)", helper, err, out)
	}
	return string(out)
}

// attacher is implemented by the pointer types of handles.
type attacher interface {
	MultiprocAttach([]*os.File, []byte) error
}

// childAttach, in a helper child, rebuilds the handles of childCmd's
// arguments into objs, in order.
func childAttach(objs ...attacher) {
	args := mptest.HelperArgs()
	if len(args) != len(objs) {
		childFail(fmt.Errorf("%d handles for %d objects", len(args), len(objs)))
	}
	fd := 3
	for i, a := range args {
		n, h, ok := strings.Cut(a, ":")
		nf, err := strconv.Atoi(n)
		desc, herr := hex.DecodeString(h)
		if !ok || err != nil || herr != nil {
			childFail(fmt.Errorf("bad handle argument %q", a))
		}
		var files []*os.File
		for range nf {
			files = append(files, os.NewFile(uintptr(fd), "inherited"))
			fd++
		}
		if err := objs[i].MultiprocAttach(files, desc); err != nil {
			childFail(err)
		}
	}
}

func childFail(err error) {
	fmt.Fprintln(os.Stderr, "child:", err)
	os.Exit(3)
}
