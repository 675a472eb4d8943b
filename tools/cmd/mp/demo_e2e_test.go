// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
)

// buildDemoBinary builds mp once per test into a temporary directory.
func buildDemoBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mp")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func runDemo(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"demo", "--no-python", "--width", "320", "--height", "200", "--max-iter", "400"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mp demo %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func decodePNG(t *testing.T, path string) (image.Image, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img, b
}

// TestDemoImage runs the demo as a user would, with and without --chaos,
// and checks the PNG: right size, not blank, and identical both times.
func TestDemoImage(t *testing.T) {
	mptest.CheckShm(t, "psm_")
	bin := buildDemoBinary(t)
	plainDir, chaosDir := t.TempDir(), t.TempDir()

	out := runDemo(t, bin, "--out", plainDir, "--starts", "3")
	if !strings.Contains(out, "identical to the single-worker image") {
		t.Errorf("demo output does not confirm the worker count made no difference:\n%s", out)
	}
	// The start-method part ran both methods to the end (its figures are
	// for reading; only that they are there is checked).
	for _, want := range []string{"spawn  forkserver", "start+join of an empty function", "pool worker SIGKILLed, replaced, task done"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	img, plain := decodePNG(t, filepath.Join(plainDir, "mandelbrot.png"))
	if got := img.Bounds().Size(); got != image.Pt(320, 200) {
		t.Fatalf("image size %v, want 320x200", got)
	}
	colors := map[[4]uint32]bool{}
	for y := 0; y < 200; y += 7 {
		for x := 0; x < 320; x += 7 {
			r, g, b, a := img.At(x, y).RGBA()
			colors[[4]uint32{r, g, b, a}] = true
		}
	}
	if len(colors) < 10 {
		t.Fatalf("image looks blank: %d distinct colours in a sample", len(colors))
	}

	out = runDemo(t, bin, "--chaos", "--baseline=false", "--band-rows", "2", "--out", chaosDir, "--starts", "0")
	if strings.Contains(out, "start+join") {
		t.Errorf("--starts 0 did not skip the start-method part:\n%s", out)
	}
	var kills int
	if i := strings.Index(out, "chaos: SIGKILLed "); i < 0 {
		t.Fatalf("chaos output missing:\n%s", out)
	} else if _, err := fmt.Sscanf(out[i:], "chaos: SIGKILLed %d", &kills); err != nil || kills < 1 {
		t.Fatalf("chaos killed %d workers (%v), want at least one:\n%s", kills, err, out)
	}
	_, chaos := decodePNG(t, filepath.Join(chaosDir, "mandelbrot.png"))
	if !bytes.Equal(plain, chaos) {
		t.Fatal("the image rendered with --chaos differs from the one rendered without")
	}
}
