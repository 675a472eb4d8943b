// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/multiproc/multiproc/pool"
	"github.com/multiproc/multiproc/shm"
)

// view is what every worker needs to render its bands: the image size, the
// region of the complex plane, and the shared segment the rows go to.
type view struct {
	Segment       string // name of the shared segment holding the pixels
	Width, Height int
	MaxIter       int
	CenterX       float64
	CenterY       float64
	Scale         float64 // width of the view in the complex plane
}

// band is one task: rows [Y0, Y1) of the image.
type band struct{ Y0, Y1 int32 }

// worker state, set once per worker process by the initializer.
var demoWorker struct {
	sync.Mutex
	v   view
	seg *shm.Segment
	px  []uint16
}

// demoInit runs once in every worker: it attaches the shared pixel buffer.
var demoInit = pool.Register("mp.demo.init", func(ctx context.Context, v view) (bool, error) {
	seg, err := shm.Open(v.Segment)
	if err != nil {
		return false, err
	}
	demoWorker.Lock()
	defer demoWorker.Unlock()
	if demoWorker.seg != nil {
		demoWorker.seg.Close()
	}
	demoWorker.v, demoWorker.seg = v, seg
	b := seg.Bytes()
	demoWorker.px = unsafeU16(b)
	return true, nil
})

// demoRows renders a band straight into shared memory and returns the
// number of iterations it spent (work done, for the summary).
var demoRows = pool.Register("mp.demo.rows", func(ctx context.Context, b band) (int64, error) {
	demoWorker.Lock()
	v, px := demoWorker.v, demoWorker.px
	demoWorker.Unlock()
	if px == nil {
		return 0, errors.New("demo worker has no pixel buffer (initializer did not run)")
	}
	return renderRows(v, px[int(b.Y0)*v.Width:int(b.Y1)*v.Width], int(b.Y0), int(b.Y1)), nil
})

// renderRows computes iteration counts for rows [y0, y1) into rows,
// which holds those rows only (row y0 first).
func renderRows(v view, rows []uint16, y0, y1 int) int64 {
	var total int64
	step := v.Scale / float64(v.Width)
	x0 := v.CenterX - v.Scale/2
	yTop := v.CenterY + step*float64(v.Height)/2
	for y := y0; y < y1; y++ {
		ci := yTop - float64(y)*step
		row := rows[(y-y0)*v.Width : (y-y0+1)*v.Width]
		for x := range row {
			cr := x0 + float64(x)*step
			zr, zi := 0.0, 0.0
			n := 0
			for ; n < v.MaxIter; n++ {
				zr2, zi2 := zr*zr, zi*zi
				if zr2+zi2 > 4 {
					break
				}
				zi = 2*zr*zi + ci
				zr = zr2 - zi2 + cr
			}
			row[x] = uint16(n)
			total += int64(n)
		}
	}
	return total
}

// colorize turns iteration counts into an image.
func colorize(v view, px []uint16) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, v.Width, v.Height))
	for i, n := range px {
		var c color.RGBA
		if int(n) >= v.MaxIter {
			c = color.RGBA{0, 0, 0, 255}
		} else {
			t := math.Sqrt(float64(n) / float64(v.MaxIter))
			c = color.RGBA{
				R: uint8(255 * math.Min(1, 9*(1-t)*t*t*t*4)),
				G: uint8(255 * math.Min(1, 15*(1-t)*(1-t)*t*t*2)),
				B: uint8(255 * math.Min(1, 8.5*(1-t)*(1-t)*(1-t)*t*3)),
				A: 255,
			}
		}
		img.Pix[i*4], img.Pix[i*4+1], img.Pix[i*4+2], img.Pix[i*4+3] = c.R, c.G, c.B, c.A
	}
	return img
}

type mandelOpts struct {
	width, height, maxIter, workers, bandRows int
	chaos                                     bool
	out                                       string
	baseline                                  bool
}

type mandelResult struct {
	elapsed  time.Duration
	checksum string
	iters    int64
	kills    int
	png      string
}

// progressBar draws a one-line bar on a terminal, or a line per quarter
// elsewhere, so logs stay readable.
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	label string
	last  int
}

func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (b *progressBar) update(done, failed, total int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if total == 0 {
		return
	}
	if b.tty {
		const width = 32
		fill := done * width / total
		fmt.Fprintf(b.w, "\r  %s [%s%s] %3d%% %d/%d bands", b.label,
			string(repeat('#', fill)), string(repeat('.', width-fill)), done*100/total, done, total)
		if failed > 0 {
			fmt.Fprintf(b.w, " (%d failed)", failed)
		}
		return
	}
	q := done * 4 / total
	if q > b.last {
		b.last = q
		fmt.Fprintf(b.w, "  %s %d%% (%d/%d bands)\n", b.label, q*25, done, total)
	}
}

func (b *progressBar) finish() {
	if b.tty {
		fmt.Fprintln(b.w)
	}
}

func repeat(c byte, n int) []byte {
	out := make([]byte, max(n, 0))
	for i := range out {
		out[i] = c
	}
	return out
}

// demoView is the region the demo renders.
func demoView(o mandelOpts) view {
	return view{Width: o.width, Height: o.height, MaxIter: o.maxIter,
		CenterX: -0.743643887037151, CenterY: 0.131825904205330, Scale: 0.0045}
}

// demoBands splits the image into tasks of o.bandRows rows.
func demoBands(o mandelOpts) []band {
	var bands []band
	for y := 0; y < o.height; y += o.bandRows {
		bands = append(bands, band{int32(y), int32(min(y+o.bandRows, o.height))})
	}
	return bands
}

// pixelChecksum is the image's identity: the first 16 hex digits of the
// SHA-256 of its iteration counts (little-endian uint16s).
func pixelChecksum(px []uint16) string {
	sum := sha256.New()
	binary.Write(sum, binary.LittleEndian, px)
	return hex.EncodeToString(sum.Sum(nil))[:16]
}

// writeDemoPNG writes the colourized image to dir/name.
func writeDemoPNG(dir, name string, v view, px []uint16) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := png.Encode(f, colorize(v, px)); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// renderMandelbrot renders the image on a pool of workers processes into a
// shared segment, optionally killing workers at random as it goes.
func renderMandelbrot(ctx context.Context, w io.Writer, o mandelOpts, workers int, label string, writePNG bool) (*mandelResult, error) {
	v := demoView(o)
	seg, err := shm.Create("", v.Width*v.Height*2)
	if err != nil {
		return nil, fmt.Errorf("shared pixel buffer: %w", err)
	}
	defer seg.Unlink()
	defer seg.Close()
	v.Segment = seg.Name()

	opts := []pool.Option{pool.Workers(workers), pool.Initializer(demoInit, v)}
	if o.chaos {
		opts = append(opts, pool.Retries(100))
	}
	p, err := pool.New(ctx, opts...)
	if err != nil {
		return nil, err
	}
	defer p.Terminate()

	bands := demoBands(o)
	bar := &progressBar{w: w, tty: isTTY(w), label: label}
	res := &mandelResult{}
	runCtx, stopChaos := context.WithCancel(ctx)
	var chaosWG sync.WaitGroup
	var killLog []string
	firstBand := make(chan struct{})
	var firstOnce sync.Once
	if o.chaos {
		chaosWG.Add(1)
		go func() {
			defer chaosWG.Done()
			// The first kill comes as soon as work is flowing, then one
			// every 80 ms, so even a small render loses workers.
			select {
			case <-runCtx.Done():
				return
			case <-firstBand:
			}
			t := time.NewTicker(80 * time.Millisecond)
			defer t.Stop()
			for first := true; ; first = false {
				if !first {
					select {
					case <-runCtx.Done():
						return
					case <-t.C:
					}
				}
				pids := p.Pids()
				if len(pids) == 0 {
					continue
				}
				pid := pids[rand.IntN(len(pids))]
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					res.kills++
					killLog = append(killLog, fmt.Sprint(pid))
				}
			}
		}()
	}
	start := time.Now()
	counts, err := demoRows.Map(ctx, p, bands, pool.Chunksize(1),
		pool.OnProgress(func(pr pool.Progress) {
			firstOnce.Do(func() { close(firstBand) })
			bar.update(pr.Done, pr.Failed, pr.Total)
		}))
	res.elapsed = time.Since(start)
	stopChaos()
	chaosWG.Wait()
	bar.finish()
	if err != nil {
		return nil, err
	}
	if err := p.Close(); err != nil {
		return nil, err
	}
	if err := p.Join(ctx); err != nil {
		return nil, err
	}
	for _, c := range counts {
		res.iters += c
	}
	if o.chaos {
		fmt.Fprintf(w, "  chaos: SIGKILLed %d workers mid-run (pids %v); the pool replaced each one and re-ran its band\n", res.kills, killLog)
	}
	px := unsafeU16(seg.Bytes())
	res.checksum = pixelChecksum(px)
	if writePNG {
		if res.png, err = writeDemoPNG(o.out, "mandelbrot.png", v, px); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// demoMandelbrot is the main part of the demo.
func demoMandelbrot(ctx context.Context, w io.Writer, o mandelOpts) error {
	fmt.Fprintf(w, "Mandelbrot %dx%d (max %d iterations) rendered by worker processes into one shared-memory buffer\n",
		o.width, o.height, o.maxIter)
	var one *mandelResult
	if o.baseline {
		var err error
		one, err = renderMandelbrot(ctx, w, mandelOpts{width: o.width, height: o.height, maxIter: o.maxIter, bandRows: o.bandRows, out: o.out}, 1, "1 worker ", false)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  1 worker:  %v\n", one.elapsed.Round(time.Millisecond))
	}
	many, err := renderMandelbrot(ctx, w, o, o.workers, fmt.Sprintf("%d workers", o.workers), true)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  %d workers: %v", o.workers, many.elapsed.Round(time.Millisecond))
	if one != nil && many.elapsed > 0 {
		if o.chaos {
			fmt.Fprintf(w, "  (includes restarting %d killed workers)", many.kills)
		} else {
			fmt.Fprintf(w, "  (speed-up %.2fx over one process)", float64(one.elapsed)/float64(many.elapsed))
		}
		if one.checksum != many.checksum {
			return fmt.Errorf("image differs between 1 and %d workers (%s vs %s)", o.workers, one.checksum, many.checksum)
		}
		fmt.Fprintf(w, "\n  identical to the single-worker image")
	}
	fmt.Fprintf(w, "\n  %.1fM iterations, image checksum %s, written to %s\n", float64(many.iters)/1e6, many.checksum, many.png)
	return nil
}
