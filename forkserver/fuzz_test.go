// SPDX-License-Identifier: Apache-2.0

package forkserver

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	fspb "github.com/multiproc/multiproc/proto/forkserver/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// FuzzRequest: any frame a warm process receives is refused or accepted
// without panicking, and an accepted request keeps what was sent.
func FuzzRequest(f *testing.F) {
	for _, r := range []*fspb.Request{
		{Bootstrap: []byte{1, 2, 3}, Files: 3},
		{Bootstrap: []byte("boot"), Files: 260, Daemon: true, ReplaceEnv: true, Env: []string{"A=B", "C="}, Name: "Process-1"},
		{Files: 2},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 3)
		f.Add(b, 253)
	}
	f.Add([]byte{0xff, 0xff, 0xff}, 0)
	f.Fuzz(func(t *testing.T, b []byte, nfiles int) {
		req, err := parseRequest(b, nfiles)
		if err != nil {
			return
		}
		if req.Files < 3 || req.Files > maxFiles || nfiles > int(req.Files) || len(req.Bootstrap) == 0 {
			t.Fatalf("accepted a bad request: %v with %d files", req, nfiles)
		}
		again, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		var back fspb.Request
		if err := proto.Unmarshal(again, &back); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(req, &back, protocmp.Transform()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
