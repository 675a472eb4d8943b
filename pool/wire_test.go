// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	commonpb "github.com/multiproc/multiproc/proto/common/v1"
	pb "github.com/multiproc/multiproc/proto/pool/v1"
)

func TestWireMatchesGenerated(t *testing.T) {
	b := appendChunk(nil, 7, 9, "square", 3, []byte{1, 2, 3})
	var m pb.ToWorker
	if err := proto.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := &pb.ToWorker{Msg: &pb.ToWorker_Chunk{Chunk: &pb.Chunk{Seq: 7, Job: 9, Task: "square", Count: 3, Inputs: []byte{1, 2, 3}}}}
	if diff := cmp.Diff(want, &m, protocmp.Transform()); diff != "" {
		t.Errorf("chunk (-want +got):\n%s", diff)
	}
	errs := []*pb.TaskError{{Index: 1, Error: &commonpb.RemoteError{Message: "x", Identities: []*commonpb.ErrorIdentity{{Key: "k"}}}}}
	b, err := appendResult(nil, 5, 2, 3, []byte{4}, errs, true)
	if err != nil {
		t.Fatal(err)
	}
	var r pb.FromWorker
	if err := proto.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	wantR := &pb.FromWorker{Msg: &pb.FromWorker_Result{Result: &pb.Result{Seq: 5, Outputs: []byte{4}, Errors: errs, Cancelled: true, Offset: 2, Count: 3}}}
	if diff := cmp.Diff(wantR, &r, protocmp.Transform()); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	b = lentResult(t, 6, []byte{0, 0}, 0xfedcba9876543210, []uint64{0, 70, 1 << 24, 1, 300, 0})
	r.Reset()
	if err := proto.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	wantR = &pb.FromWorker{Msg: &pb.FromWorker_Result{Result: &pb.Result{Seq: 6, Outputs: []byte{0, 0},
		LentSegment: 0xfedcba9876543210, LentSpans: []uint64{0, 70, 1 << 24, 1, 300, 0}}}}
	if diff := cmp.Diff(wantR, &r, protocmp.Transform()); diff != "" {
		t.Errorf("lent result (-want +got):\n%s", diff)
	}
	got, ok, _, err := parseFromWorker(b)
	if err != nil || !ok || got.lentSeg != 0xfedcba9876543210 || !cmp.Equal(got.lentSpans, []uint64{0, 70, 1 << 24, 1, 300, 0}) {
		t.Errorf("lent result decoded by hand: %+v, %v", got, err)
	}
}

// lentResult encodes a final result with lent results (resultFrame.lend).
func lentResult(t testing.TB, seq uint64, outputs []byte, token uint64, spans []uint64) []byte {
	r, err := newResultFrame(seq, 0, 0, len(outputs), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	r.lend(token, spans)
	b := r.appendTo(nil, func(b []byte) []byte { return append(b, outputs...) })
	if len(b) != r.size() {
		t.Fatalf("lent result of %d bytes, size says %d", len(b), r.size())
	}
	return b
}

func TestControlAndConfig(t *testing.T) {
	b, _ := proto.Marshal(&pb.ToWorker{Msg: &pb.ToWorker_Cancel{Cancel: &pb.Cancel{Job: 300}}})
	if m, ok := parseControl(b); !ok || !m.cancel || m.job != 300 {
		t.Errorf("cancel: %+v %v", m, ok)
	}
	if m, ok := parseControl(stopFrame); !ok || !m.stop {
		t.Errorf("stop: %+v %v", m, ok)
	}
	b, _ = proto.Marshal(&pb.WorkerConfig{Initializer: "i", InitializerInput: []byte{1}, TaskTimeoutNs: 5})
	if c, err := parseConfig(b); err != nil || c.initializer != "i" || string(c.initInput) != "\x01" || c.timeout != 5 {
		t.Errorf("config: %+v %v", c, err)
	}
	var r pb.FromWorker
	if err := proto.Unmarshal(appendReady(nil, 1234), &r); err != nil || r.GetReady().GetPid() != 1234 {
		t.Errorf("ready: %v %v", &r, err)
	}
}

// FuzzWire checks the hand-written decoders against the generated code:
// they never panic, and whatever they accept, the generated code decodes
// the same way.
func FuzzWire(f *testing.F) {
	f.Add(appendChunk(nil, 1, 2, "t", 1, []byte{9}))
	b, _ := appendResult(nil, 3, 0, 0, []byte{1}, []*pb.TaskError{{Index: 0, Error: &commonpb.RemoteError{Message: "m"}}}, false)
	f.Add(b)
	b, _ = appendResult(nil, 3, 4, 2, []byte{1, 2}, nil, false)
	f.Add(b)
	b, _ = proto.Marshal(&pb.ToWorker{Msg: &pb.ToWorker_Cancel{Cancel: &pb.Cancel{Job: 4}}})
	f.Add(b)
	f.Add(lentResult(f, 8, []byte{0}, 77, []uint64{0, 64, 1 << 20}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, ok, _, err := parseToWorker(b); err == nil && ok {
			var m pb.ToWorker
			if proto.Unmarshal(b, &m) != nil {
				t.Fatalf("hand decoder accepted a chunk the generated code refuses")
			}
			g := m.GetChunk()
			if g == nil || g.Seq != c.seq || g.Job != c.job || g.Task != c.task || g.Count != c.count || string(g.Inputs) != string(c.inputs) {
				t.Fatalf("chunk %+v, generated %v", c, &m)
			}
		}
		if c, ok := parseControl(b); ok {
			var m pb.ToWorker
			if proto.Unmarshal(b, &m) != nil || (c.stop != (m.GetStop() != nil)) || (c.cancel && m.GetCancel().GetJob() != c.job) {
				t.Fatalf("control %+v, generated %v", c, &m)
			}
		}
		if c, err := parseConfig(b); err == nil {
			var m pb.WorkerConfig
			if proto.Unmarshal(b, &m) != nil || m.Initializer != c.initializer || string(m.InitializerInput) != string(c.initInput) || m.TaskTimeoutNs != c.timeout {
				t.Fatalf("config %+v, generated %v", c, &m)
			}
		}
		if r, ok, _, err := parseFromWorker(b); err == nil && ok {
			var m pb.FromWorker
			if proto.Unmarshal(b, &m) != nil {
				t.Fatalf("hand decoder accepted a result the generated code refuses")
			}
			g := m.GetResult()
			if g == nil || g.Seq != r.seq || string(g.Outputs) != string(r.outputs) || g.Cancelled != r.cancelled || len(g.Errors) != len(r.errs) ||
				g.Offset != r.off || g.Count != r.count || g.LentSegment != r.lentSeg || !slices.Equal(g.LentSpans, r.lentSpans) {
				t.Fatalf("result %+v, generated %v", r, &m)
			}
		}
	})
}
