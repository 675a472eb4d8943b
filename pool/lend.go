// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"bytes"
	"fmt"
	"reflect"
	"unsafe"
)

// Results lent from their chunk's frame. A worker reads a large chunk in
// place, in the segment of shared memory the pool wrote it into, and
// lends its tasks their []byte arguments from there (sharedIO.lend). A
// task that returns such an argument, or a part of it (an echo, a
// transformation in place, a sub-slice), returns bytes that the pool
// already has in its own segment. Copying them into a result segment of
// the worker's, for the pool to copy them out again, would be one copy
// too many: instead the worker hands the chunk's segment back to the pool
// (ipc.Conn.HandBack), its result names the segment and where each such
// result lies in the frame (Result.lent_spans), and the pool copies them
// out from its own mapping into the caller's memory, then frees the
// segment. The pool's copy is the only one the result costs.

// lendResults, in a worker, takes out of outs the byte slices that lie in
// the chunk's frame (sio.frame), when R is a byte slice and the frame is
// a segment the worker can hand back, and records them in sio.lentSeg and
// sio.lentSpans (index, offset in the frame, length); their places in
// outs are cleared (encoded as empty). Nothing changes when none lies
// there or the segment cannot be handed back.
func lendResults[R any](outs []R, sio *sharedIO) {
	var spans []uint64
	for i := range outs {
		b := reflect.ValueOf(&outs[i]).Elem().Bytes()
		if off, ok := offsetIn(sio.frame, b); ok {
			spans = append(spans, uint64(i), uint64(off), uint64(len(b)))
		}
	}
	if len(spans) == 0 {
		return
	}
	token, ok := sio.handBack()
	if !ok {
		return
	}
	var zero R
	for k := 0; k < len(spans); k += 3 {
		outs[spans[k]] = zero
	}
	sio.lentSeg, sio.lentSpans = token, spans
}

// offsetIn returns the offset of b in frame when b is a non-empty slice
// lying inside it.
func offsetIn(frame, b []byte) (int, bool) {
	if len(b) == 0 || len(frame) < len(b) {
		return 0, false
	}
	f, p := uintptr(unsafe.Pointer(unsafe.SliceData(frame))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if p < f || p-f > uintptr(len(frame)-len(b)) {
		return 0, false
	}
	return int(p - f), true
}

// decodeLent, in the pool, decodes n results from b and puts in the
// results that were lent (spans, see lendResults) copies of their bytes in
// frame, the chunk's frame as the worker handed it back. A span out of
// bounds is an error.
func (t *Task[A, R]) decodeLent(b []byte, n int, frame []byte, spans []uint64) (any, error) {
	if len(spans)%3 != 0 {
		return nil, fmt.Errorf("pool: %d numbers of lent results, not triples", len(spans))
	}
	outs, err := t.out.Decode(b, n)
	if err != nil {
		return nil, err
	}
	for k := 0; k < len(spans); k += 3 {
		i, off, size := spans[k], spans[k+1], spans[k+2]
		if i >= uint64(n) || off > uint64(len(frame)) || size > uint64(len(frame))-off {
			return nil, fmt.Errorf("pool: lent result %d at [%d, +%d) outside its frame of %d bytes", i, off, size, len(frame))
		}
		// bytes.Clone allocates without clearing the memory first.
		reflect.ValueOf(&outs[i]).Elem().SetBytes(bytes.Clone(frame[off : off+size]))
	}
	return outs, nil
}
