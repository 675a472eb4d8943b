// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func TestSmokePipe(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{{"pipes", nil}, {"socketpair", []Option{Socketpair()}}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, err := Pipe(true, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			big := bytes.Repeat([]byte("x"), 3<<20)
			go func() {
				for _, m := range [][]byte{[]byte("ping"), {}, big} {
					if err := a.SendBytes(ctx, m); err != nil {
						t.Error(err)
					}
				}
				a.Close()
			}()
			for _, want := range [][]byte{[]byte("ping"), {}, big} {
				got, err := b.RecvBytes(ctx)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("got %d bytes, %v; want %d", len(got), err, len(want))
				}
			}
			if _, err := b.RecvBytes(ctx); err != io.EOF {
				t.Fatalf("want EOF, got %v", err)
			}
			cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			c, d, _ := Pipe(true, tc.opts...)
			defer c.Close()
			defer d.Close()
			if _, err := d.RecvBytes(cctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("want deadline, got %v", err)
			}
			if err := c.SendBytes(ctx, []byte("after")); err != nil {
				t.Fatal(err)
			}
			if got, err := d.RecvBytes(ctx); err != nil || string(got) != "after" {
				t.Fatalf("after cancel: %q %v", got, err)
			}
			b.Close()
		})
	}
}
