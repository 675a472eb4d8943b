// SPDX-License-Identifier: Apache-2.0

package process_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A program whose main forgets process.Init(): its child runs main instead
// of the function and tries to start a child of its own. The child tells
// the parent why and exits quietly, so the advice is printed once, by the
// parent, and not once more by every child on the shared stderr.
func TestNoInitOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a ceiling: building takes a while on a loaded machine
	defer cancel()
	bin := filepath.Join(t.TempDir(), "noinit")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./testdata/noinit").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin).CombinedOutput()
	if err == nil {
		t.Fatalf("the program succeeded without process.Init():\n%s", out)
	}
	text := string(out)
	if n := strings.Count(text, "did not call process.Init()"); n != 1 {
		t.Fatalf("the advice appears %d times, want once:\n%s", n, text)
	}
	if lines := strings.Count(strings.TrimSpace(text), "\n") + 1; lines != 1 {
		t.Errorf("%d lines of output, want one:\n%s", lines, text)
	}
	if !strings.Contains(text, "start:") && !strings.Contains(text, "wait:") {
		t.Errorf("the message does not come from the parent's Start or Wait:\n%s", text)
	}
}
