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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestDemoClusterChaos runs mp demo --cluster --chaos as a user would: the
// image is rendered by the local pool, then by two cluster agents (child
// processes of mp, behind its embedded NATS server), one of which is
// SIGKILLed a third of the way through. The cluster's PNG must be
// byte-identical to the local pool's, mp must leave no agent running and
// no temporary store behind.
func TestDemoClusterChaos(t *testing.T) {
	mptest.CheckShm(t, "psm_")
	bin := buildDemoBinary(t)
	dir, tmp := t.TempDir(), t.TempDir()
	cmd := exec.Command(bin, "demo", "--no-python", "--starts", "0", "--width", "320", "--height", "200", "--max-iter", "400",
		"--band-rows", "2", "--cluster", "--chaos", "--out", dir)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("mp demo --cluster --chaos: %v\n%s", err, out)
	}
	for _, want := range []string{"local agents", "cluster   100% (100/100 bands)", "chaos: SIGKILLed agent pid", "byte-identical to the local pool's image"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The kill came in the middle of the render, not after it.
	var pid, done, total int
	if i := strings.Index(out, "chaos: SIGKILLed agent pid "); i >= 0 {
		if _, err := fmt.Sscanf(out[i:], "chaos: SIGKILLed agent pid %d (its workers go with it) at %d/%d bands", &pid, &done, &total); err != nil {
			t.Fatalf("chaos line: %v\n%s", err, out)
		}
		if done < 1 || done >= total {
			t.Errorf("the agent was killed at %d/%d bands, not mid-render", done, total)
		}
	}
	local, a := decodePNG(t, filepath.Join(dir, "mandelbrot.png"))
	_, b := decodePNG(t, filepath.Join(dir, "mandelbrot-cluster.png"))
	if got := local.Bounds().Size(); got != image.Pt(320, 200) {
		t.Fatalf("image size %v, want 320x200", got)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("the cluster's image differs from the local pool's")
	}
	// The agents mp started are gone with it.
	i := strings.Index(out, "(pids [")
	if i < 0 {
		t.Fatalf("no agent pids in the output:\n%s", out)
	}
	pids := strings.Fields(out[i+len("(pids [") : i+strings.Index(out[i:], "]")])
	if len(pids) != 2 {
		t.Fatalf("agents %v, want 2", pids)
	}
	for _, s := range pids {
		p, _ := strconv.Atoi(s)
		deadline := time.Now().Add(30 * time.Second)
		for syscall.Kill(p, 0) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("agent %d still runs after mp exited", p)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("mp left %d entries in its TMPDIR (the embedded server's store?): %v", len(left), left[0].Name())
	}
}

// TestDemoClusterURL runs the caller side of docs/cluster.md's
// walkthrough: mp cluster serve, an mp agent joining with
// MULTIPROC_CLUSTER and the token, and mp demo --url mapping the bands
// over it; the image is byte-identical to the local pool's, and the agent
// is the one that did the work.
func TestDemoClusterURL(t *testing.T) {
	mptest.CheckShm(t, "psm_")
	mptest.CheckChildren(t)
	bin := buildDemoBinary(t)
	env := []string{"MULTIPROC_CLUSTER_TOKEN=s3cret"}
	srv, url, rest := clusterServe(t, bin, env, "--listen", "127.0.0.1:0", "--log", "error")
	agent := exec.Command(bin)
	agent.Env = append(os.Environ(), append(env, "MULTIPROC_CLUSTER="+url, "MULTIPROC_CLUSTER_WORKERS=1", "MULTIPROC_CLUSTER_LOG=warn")...)
	agent.Stderr = os.Stderr
	agent.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		agent.Process.Signal(syscall.SIGTERM)
		agent.Wait()
	}()
	dir := t.TempDir()
	cmd := exec.Command(bin, "demo", "--no-python", "--starts", "0", "--width", "160", "--height", "100", "--max-iter", "300",
		"--url", url, "--out", dir)
	cmd.Env = append(os.Environ(), env...)
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("mp demo --url: %v\n%s", err, out)
	}
	for _, want := range []string{fmt.Sprintf("1 agents of this build so far (pids [%d])", agent.Process.Pid), "byte-identical to the local pool's image"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	_, a := decodePNG(t, filepath.Join(dir, "mandelbrot.png"))
	_, b := decodePNG(t, filepath.Join(dir, "mandelbrot-cluster.png"))
	if !bytes.Equal(a, b) {
		t.Fatal("the cluster's image differs from the local pool's")
	}
	agent.Process.Signal(syscall.SIGTERM)
	if err := agent.Wait(); err != nil {
		t.Errorf("the agent after SIGTERM: %v", err)
	}
	stopClusterServe(t, srv, rest)
}
