// SPDX-License-Identifier: Apache-2.0

package process

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestParentAliveByStartTime(t *testing.T) {
	me := &ParentProcess{Pid: os.Getpid(), StartTime: myStartTime(), lifeline: -1}
	if me.StartTime == 0 || !me.Alive() {
		t.Fatalf("this process (start time %d) is not alive", me.StartTime)
	}
	// Same pid, another start time: a process that reused the pid.
	reused := &ParentProcess{Pid: os.Getpid(), StartTime: me.StartTime + 1, lifeline: -1}
	if reused.Alive() {
		t.Fatal("a reused pid passes for the parent")
	}
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	gone := &ParentProcess{Pid: cmd.Process.Pid, StartTime: 1, lifeline: -1}
	if gone.Alive() {
		t.Fatal("a reaped process is alive")
	}
	var nilParent *ParentProcess
	if nilParent.Alive() || nilParent.Done() != nil {
		t.Fatal("nil parent")
	}
}

func TestReadCPUMax(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		content string
		want    float64
	}{
		{"max 100000\n", 0},
		{"150000 100000\n", 1.5},
		{"50000 100000", 0.5},
		{"garbage", 0},
		{"0 100000", 0},
	} {
		p := filepath.Join(dir, "cpu.max")
		os.WriteFile(p, []byte(tt.content), 0o600)
		if got := readCPUMax(p); got != tt.want {
			t.Errorf("readCPUMax(%q) = %v, want %v", tt.content, got, tt.want)
		}
	}
	if got := readCPUMax(filepath.Join(dir, "missing")); got != 0 {
		t.Errorf("missing file: %v", got)
	}
}

func TestParseChildEnv(t *testing.T) {
	for _, tt := range []struct {
		in      string
		fd0, n  int
		wantErr bool
	}{
		{"3:2", 3, 2, false},
		{"3:0", 3, 0, false},
		{"2:1", 0, 0, true},
		{"3", 0, 0, true},
		{"x:1", 0, 0, true},
		{"3:-1", 0, 0, true},
		{"3:99999", 0, 0, true},
	} {
		fd0, n, err := parseChildEnv(tt.in)
		if (err != nil) != tt.wantErr || fd0 != tt.fd0 || n != tt.n {
			t.Errorf("parseChildEnv(%q) = %d, %d, %v", tt.in, fd0, n, err)
		}
	}
}
