// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/multiproc/multiproc/internal/mptest"
)

// handback hands back every shared-memory frame it receives and answers
// with the token, until killed.
var _ = mptest.RegisterHelper("handback", func() {
	conns, _ := childConns()
	c := conns[0]
	ctx := context.Background()
	for {
		data, release, err := c.RecvShared(ctx, nil)
		if err != nil {
			fail(err)
		}
		token, err := c.HandBack(data)
		if err != nil {
			fail(err)
		}
		release()
		if err := c.SendBytes(ctx, binary.LittleEndian.AppendUint64(nil, token)); err != nil {
			fail(err)
		}
	}
})

// TestHandBackKilledReceiver: a child hands segments back and is
// SIGKILLed; a payload taken back stays whole (it is the sender's own
// memory), and once it is freed and the Conn closed, no descriptor,
// mapping or /dev/shm entry is left, whether or not the sender took back
// the last segment handed to it.
func TestHandBackKilledReceiver(t *testing.T) {
	mptest.CheckFDs(t)
	mptest.CheckChildren(t)
	mptest.CheckShm(t)
	a, b, err := Pipe(true, SharedMemory(4096))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cmd := startChild(t, "handback", nil, b)
	ctx := ctxTimeout(t)
	var tokens []uint64
	for i := range 2 {
		if err := a.SendBytes(ctx, pattern(1<<20, byte(i))); err != nil {
			t.Fatal(err)
		}
		ans, err := a.RecvBytes(ctx)
		if err != nil || len(ans) != 8 {
			t.Fatalf("answer %d: %d bytes, %v", i, len(ans), err)
		}
		tokens = append(tokens, binary.LittleEndian.Uint64(ans))
	}
	payload, free, ok := a.HandedBack(tokens[0])
	if !ok {
		t.Fatal("HandedBack: not found")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if !bytes.Equal(payload, pattern(1<<20, 0)) {
		t.Fatal("a payload taken back changed when its receiver was killed")
	}
	free()
	a.Close()
	if k := frameMappings(t); k != 0 {
		t.Fatalf("%d segments still mapped after Close", k)
	}
}

// TestHandBack: a receiver hands a segment back; the sender reads the
// payload there as it sent it (the receiver's answer could point into
// it), does not reuse the segment meanwhile, however many frames follow,
// and reuses it once freed.
func TestHandBack(t *testing.T) {
	mptest.CheckFDs(t)
	const th = 4096
	a, b := shmPipe(t, th)
	ctx := ctxTimeout(t)
	first := pattern(3*th, 1)
	if err := a.SendBytes(ctx, first); err != nil {
		t.Fatal(err)
	}
	data, release, err := b.RecvShared(ctx, nil)
	if err != nil || release == nil {
		t.Fatalf("RecvShared: %v (release %v)", err, release != nil)
	}
	if _, err := b.HandBack(pattern(10, 0)); !errors.Is(err, ErrNotShared) {
		t.Fatalf("HandBack of the receiver's own memory: %v, want ErrNotShared", err)
	}
	token, err := b.HandBack(data[100:200])
	if err != nil {
		t.Fatal(err)
	}
	release()
	for i := range 20 {
		want := pattern(3*th, byte(i+2))
		if err := a.SendBytes(ctx, want); err != nil {
			t.Fatal(err)
		}
		if got, err := b.RecvBytes(ctx); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if _, _, ok := a.HandedBack(token + 1); ok {
		t.Fatal("HandedBack of a token that names no segment: ok")
	}
	payload, free, ok := a.HandedBack(token)
	if !ok || !bytes.Equal(payload, first) {
		t.Fatalf("HandedBack: ok %v, payload equal %v", ok, bytes.Equal(payload, first))
	}
	// Held back: of the 4 segments, 3 remain for sending.
	for range 3 {
		if err := a.SendBytes(ctx, first); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if err := a.SendBytes(short, first); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send with the handed-back segment not freed: %v, want DeadlineExceeded", err)
	}
	cancel()
	free()
	free() // only the first call acts
	if err := a.SendBytes(ctx, first); err != nil {
		t.Fatalf("send once the handed-back segment is freed: %v", err)
	}
	for range 4 {
		if got, err := b.RecvBytes(ctx); err != nil || !bytes.Equal(got, first) {
			t.Fatal(err)
		}
	}
	if k := frameMappings(t); k != 8 {
		t.Fatalf("%d segments mapped, want 8 (4 sending, 4 received)", k)
	}
}

// TestHandBackClosed: a payload from HandedBack stays readable when the
// Conn closes before it is freed; the free then unmaps the segment.
func TestHandBackClosed(t *testing.T) {
	mptest.CheckFDs(t)
	a, b := shmPipe(t, 4096)
	ctx := ctxTimeout(t)
	want := pattern(20000, 9)
	if err := a.SendBytes(ctx, want); err != nil {
		t.Fatal(err)
	}
	data, release, err := b.RecvShared(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	token, err := b.HandBack(data)
	if err != nil {
		t.Fatal(err)
	}
	release()
	b.Close()
	payload, free, ok := a.HandedBack(token)
	if !ok {
		t.Fatal("HandedBack: not found")
	}
	a.Close()
	if _, _, ok := a.HandedBack(token); ok {
		t.Fatal("HandedBack after Close: ok")
	}
	if !bytes.Equal(payload, want) {
		t.Fatal("payload changed")
	}
	if k := frameMappings(t); k != 1 {
		m, _ := os.ReadFile("/proc/self/maps")
		t.Fatalf("%d segments mapped before free, want 1\n%s", k, m)
	}
	free()
	if k := frameMappings(t); k != 0 {
		t.Fatalf("%d segments mapped after free, want 0", k)
	}
}
