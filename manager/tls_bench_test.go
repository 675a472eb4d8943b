// SPDX-License-Identifier: Apache-2.0

package manager_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"github.com/multiproc/multiproc/manager"
)

// BenchmarkTLS measures what TLS costs a remote client: the same calls
// to a server process started by Start on loopback TCP, over plain TCP
// and over TLS (TLS 1.3, ECDSA P-256 certificates), each through a
// Client made by Connect.
func BenchmarkTLS(b *testing.B) {
	ctx := context.Background()
	certs := mptest.NewTLSCerts(b)
	setServerTLSEnv(b, certs)
	key := []byte("bench key")
	for _, tr := range []struct {
		name string
		srv  []manager.Option
		cli  []manager.Option
	}{
		{"tcp", nil, nil},
		{"tls", []manager.Option{manager.ServerTLS(testServerTLS)}, []manager.Option{manager.TLS(certs.ClientConfig())}},
	} {
		m, err := manager.Start(ctx, append([]manager.Option{manager.Address("tcp", "127.0.0.1:0"), manager.Authkey(key)}, tr.srv...)...)
		if err != nil {
			b.Fatal(err)
		}
		network, addr := m.Address()
		c, err := manager.Connect(ctx, network, addr, append([]manager.Option{manager.Authkey(key)}, tr.cli...)...)
		if err != nil {
			m.Close()
			b.Fatal(err)
		}
		b.Run("dict.get/"+tr.name, func(b *testing.B) {
			d, err := manager.NewDict(ctx, c, map[string]int{"k": 1})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Release(ctx)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Get(ctx, "k"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1000/float64(b.N), "us")
		})
		b.Run("dict.set.64KiB/"+tr.name, func(b *testing.B) {
			d, err := manager.NewDict[string, []byte](ctx, c)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Release(ctx)
			v := bytes.Repeat([]byte("x"), 64<<10)
			b.SetBytes(int64(len(v)))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Set(ctx, "k", v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("connect/"+tr.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c, err := manager.Connect(ctx, network, addr, append([]manager.Option{manager.Authkey(key)}, tr.cli...)...)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
		c.Close()
		m.Close()
	}
}
