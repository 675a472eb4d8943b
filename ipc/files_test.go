// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
	"golang.org/x/sys/unix"
)

func tempFileWith(t *testing.T, content string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(content)
	return f
}

// highFile duplicates f onto a descriptor number >= min (test_fd_transfer
// with fds above 256) and closes f.
func highFile(t *testing.T, f *os.File, min int) *os.File {
	t.Helper()
	defer f.Close()
	raw, _ := f.SyscallConn()
	nfd := -1
	var derr error
	raw.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, min) })
	if derr != nil {
		t.Fatal(derr)
	}
	return os.NewFile(uintptr(nfd), f.Name())
}

// _TestConnection.test_fd_transfer / test_large_fd_transfer: files sent
// to a child process over a socketpair; the child reads them and reports.
func TestSendFilesToChild(t *testing.T) {
	mptest.CheckFDs(t)
	ctx := context.Background()
	a, b := mustPipe(t, true, Socketpair())
	cmd := startChild(t, "files", nil, b)
	defer waitChild(t, cmd)
	defer a.Close()

	f1 := tempFileWith(t, "one")
	f2 := highFile(t, tempFileWith(t, "two"), 300)
	defer f1.Close()
	defer f2.Close()
	// After each frame the child reports the descriptors it holds: the
	// same every time (different frames carry 0, 1 or 2 files), none of
	// them a file it was sent.
	var childFDs string
	for i, tc := range []struct {
		payload string
		files   []*os.File
		want    string
	}{
		{"a", []*os.File{f1}, "a|one"},
		{"b", []*os.File{f2, f1}, "b|two|one"},
		{"", nil, ""},
		{strings.Repeat("z", 100000), []*os.File{f2}, strings.Repeat("z", 100000) + "|two"},
	} {
		if err := a.SendFiles(ctx, []byte(tc.payload), tc.files...); err != nil {
			t.Fatal(err)
		}
		got, err := a.RecvBytes(ctx)
		if err != nil || string(got) != tc.want {
			t.Fatalf("%d: %.40q %v, want %.40q", i, got, err, tc.want)
		}
		fds, err := a.RecvBytes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(fds), f1.Name()) || strings.Contains(string(fds), f2.Name()) {
			t.Errorf("%d: the child still holds a file it was sent: %s", i, fds)
		}
		if i == 0 {
			childFDs = string(fds)
		} else if string(fds) != childFDs {
			t.Errorf("%d: the child's descriptors changed (a received file leaked?):\nfirst %s\nnow   %s", i, childFDs, fds)
		}
	}
}

// RecvFiles returns exactly the files sent with each frame, whatever the
// frames around it; files that come with a frame read by RecvBytes are
// closed, and Close closes files not collected.
func TestRecvFilesBoundaries(t *testing.T) {
	mptest.CheckFDs(t)
	ctx := context.Background()
	a, b := mustPipe(t, true, Socketpair())
	files := make([]*os.File, 4)
	for i := range files {
		files[i] = tempFileWith(t, fmt.Sprint("file", i))
		defer files[i].Close()
	}
	// Frames with and without files, sent back to back so that they are
	// read together.
	a.SendBytes(ctx, []byte("plain1"))
	a.SendFiles(ctx, []byte("with0"), files[0])
	a.SendFiles(ctx, []byte("with12"), files[1], files[2])
	a.SendBytes(ctx, []byte("plain2"))
	a.SendFiles(ctx, nil, files[3])
	a.SendFiles(ctx, []byte("dropped"), files[0], files[1])
	a.SendFiles(ctx, []byte("leftover"), files[2])

	check := func(wantP string, want ...string) {
		t.Helper()
		p, fs, err := b.RecvFiles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range fs {
			buf := make([]byte, 16)
			n, _ := f.ReadAt(buf, 0)
			got = append(got, string(buf[:n]))
			f.Close()
		}
		if string(p) != wantP || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("got %q %v, want %q %v", p, got, wantP, want)
		}
	}
	check("plain1")
	check("with0", "file0")
	check("with12", "file1", "file2")
	check("plain2")
	check("", "file3")
	if got, err := b.RecvBytes(ctx); err != nil || string(got) != "dropped" {
		t.Fatalf("%q %v", got, err)
	}
	// "leftover" stays unread with its file: Close must close it.
	if ok, _ := b.Poll(ctx); !ok {
		t.Fatal("leftover frame not pollable")
	}
	b.Close()
	a.Close()
}

func TestSendFilesNotSocket(t *testing.T) {
	ctx := context.Background()
	a, b := mustPipe(t, true)
	f := tempFileWith(t, "x")
	defer f.Close()
	if err := a.SendFiles(ctx, nil, f); !errors.Is(err, ErrNotSocket) {
		t.Errorf("SendFiles over pipes: %v", err)
	}
	if _, _, err := b.RecvFiles(ctx); !errors.Is(err, ErrNotSocket) {
		t.Errorf("RecvFiles over pipes: %v", err)
	}
	// Simplex socketpair: the write end passes files, the read end gets them.
	r, w := mustPipe(t, false, Socketpair())
	if err := w.SendFiles(ctx, []byte("s"), f); err != nil {
		t.Fatal(err)
	}
	p, fs, err := r.RecvFiles(ctx)
	if err != nil || string(p) != "s" || len(fs) != 1 {
		t.Fatalf("%q %v %v", p, fs, err)
	}
	fs[0].Close()
}

// Files over a unix Listener connection.
func TestSendFilesListener(t *testing.T) {
	mptest.CheckFDs(t)
	ctx := context.Background()
	l := mustListen(t, "unix", filepath.Join(t.TempDir(), "s"), Authkey([]byte("k")))
	acc := make(chan *Conn, 1)
	go func() {
		c, err := l.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	c, err := Dial(ctx, "unix", l.Addr().String(), Authkey([]byte("k")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-acc
	if s == nil {
		t.FailNow()
	}
	defer s.Close()
	f := highFile(t, tempFileWith(t, "over the wire"), 400)
	defer f.Close()
	if err := c.SendFiles(ctx, []byte("hi"), f); err != nil {
		t.Fatal(err)
	}
	p, fs, err := s.RecvFiles(ctx)
	if err != nil || string(p) != "hi" || len(fs) != 1 {
		t.Fatalf("%q %v %v", p, fs, err)
	}
	buf := make([]byte, 32)
	n, _ := fs[0].ReadAt(buf, 0)
	fs[0].Close()
	if string(buf[:n]) != "over the wire" {
		t.Fatalf("%q", buf[:n])
	}
}

// Concurrent SendFiles and SendBytes: every received frame comes with
// exactly its own files, however the kernel batched the bytes.
func TestSendFilesConcurrent(t *testing.T) {
	mptest.CheckFDs(t)
	ctx := context.Background()
	a, b := mustPipe(t, true, Socketpair())
	const senders, each = 3, 60
	files := make([]*os.File, senders)
	for s := range files {
		files[s] = tempFileWith(t, fmt.Sprint("sender", s))
		defer files[s].Close()
	}
	errc := make(chan error, senders+1)
	for s := range senders {
		go func() {
			for i := range each {
				var err error
				if i%3 == 2 {
					err = a.SendBytes(ctx, []byte(fmt.Sprint("plain", s)))
				} else {
					err = a.SendFiles(ctx, []byte(fmt.Sprint("sender", s)), files[s])
				}
				if err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range senders * each {
		p, fs, err := b.RecvFiles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := 1
		if strings.HasPrefix(string(p), "plain") {
			want = 0
		}
		if len(fs) != want {
			t.Fatalf("%q came with %d files", p, len(fs))
		}
		for _, f := range fs {
			buf := make([]byte, 16)
			n, _ := f.ReadAt(buf, 0)
			f.Close()
			if string(buf[:n]) != string(p) {
				t.Fatalf("frame %q came with the file of %q", p, buf[:n])
			}
		}
	}
	for range senders {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}
