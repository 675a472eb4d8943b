// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"context"
	"sync/atomic"
	"testing"

	pb "github.com/multiproc/multiproc/proto/pool/v1"
)

var benchSquare = Register("bench.square", func(ctx context.Context, x int) (int, error) { return x * x, nil })

// BenchmarkRunChunk is a worker's side of a default Map chunk of tiny
// tasks (1,250), without hooks and with the progress word and partial
// results armed (as a worker runs them): what per-task progress costs.
func BenchmarkRunChunk(b *testing.B) {
	const n = 1250
	in := make([]int, n)
	data, err := benchSquare.in.Append(nil, in)
	if err != nil {
		b.Fatal(err)
	}
	var word uint64
	var flush atomic.Bool
	for _, bb := range []struct {
		name string
		h    *runHooks
	}{
		{"nohooks", nil},
		{"progress", &runHooks{mark: &word, flush: &flush, partial: func(int, int, []byte, []*pb.TaskError) bool { return true }}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			var dst []byte
			for b.Loop() {
				dst, _ = benchSquare.runEncoded(context.Background(), data, n, bb.h, dst[:0], nil)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/task")
		})
	}
}

// The progress word names the running task of the chunk the worker is on.
func TestProgressWord(t *testing.T) {
	var word uint64
	lp := readProgress(&word)
	if _, ok := lp.task(); ok || !lp.known {
		t.Errorf("fresh word: %+v", lp)
	}
	c := &chunk{order: 7, n: 10}
	word = 7<<32 | 4
	lp = readProgress(&word)
	if i, ok := lp.task(); !ok || i != 3 || !lp.on(c) || lp.notReached(c) {
		t.Errorf("task 3 of chunk 7: %+v", lp)
	}
	if next := (&chunk{order: 8}); lp.on(next) || !lp.notReached(next) {
		t.Errorf("chunk 8 should not be reached: %+v", lp)
	}
	word = 7<<32 | markChunk
	if lp = readProgress(&word); lp.state != markChunk || !lp.on(c) {
		t.Errorf("chunk work: %+v", lp)
	}
	word = 7<<32 | markFinishing
	if lp = readProgress(&word); !lp.on(c) || lp.state != markFinishing {
		t.Errorf("finishing: %+v", lp)
	}
	if _, ok := lp.task(); ok {
		t.Errorf("finishing names a task: %+v", lp)
	}
	if lp = readProgress(nil); lp.known || !lp.notReached(c) {
		t.Errorf("no word: %+v", lp)
	}
}
