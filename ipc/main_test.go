// SPDX-License-Identifier: Apache-2.0

package ipc

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/multiproc/multiproc/internal/mptest"
)

func TestMain(m *testing.M) { mptest.Main(m) }

// startChild starts the named helper with conns handed over as in the
// process package: their files travel as ExtraFiles and each descriptor
// goes on the command line as "<nfiles>:<hex desc>". The caller's copies
// of conns are closed once the child has started.
func startChild(t testing.TB, name string, args []string, conns ...*Conn) *exec.Cmd {
	t.Helper()
	var files []*os.File
	var descs []string
	for _, c := range conns {
		fs, desc, err := c.MultiprocHandle()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fs...)
		descs = append(descs, fmt.Sprintf("%d:%s", len(fs), hex.EncodeToString(desc)))
	}
	cmd := mptest.HelperCmd(t, name, append([]string{strconv.Itoa(len(conns))}, append(descs, args...)...)...)
	cmd.ExtraFiles = files
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	for _, c := range conns {
		c.Close()
	}
	return cmd
}

// childConns rebuilds the Conns startChild handed over and returns the
// remaining arguments.
func childConns() ([]*Conn, []string) {
	args := mptest.HelperArgs()
	n, err := strconv.Atoi(args[0])
	if err != nil {
		fail(err)
	}
	fd := 3
	var conns []*Conn
	for _, d := range args[1 : 1+n] {
		var k int
		var h string
		if _, err := fmt.Sscanf(d, "%d:%s", &k, &h); err != nil {
			fail(err)
		}
		desc, err := hex.DecodeString(h)
		if err != nil {
			fail(err)
		}
		var files []*os.File
		for range k {
			files = append(files, os.NewFile(uintptr(fd), "inherited"))
			fd++
		}
		c := new(Conn)
		if err := c.MultiprocAttach(files, desc); err != nil {
			fail(err)
		}
		conns = append(conns, c)
	}
	return conns, args[1+n:]
}

// openFDList returns this process's open descriptors, in order, with
// what each refers to ("3:socket:[1234] 4:anon_inode:[eventfd] ..."),
// leaving out the one that reads /proc/self/fd.
func openFDList() string {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		fail(err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		fail(err)
	}
	self := int(d.Fd())
	var fds []int
	for _, n := range names {
		if fd, err := strconv.Atoi(n); err == nil && fd != self {
			fds = append(fds, fd)
		}
	}
	slices.Sort(fds)
	var b strings.Builder
	for _, fd := range fds {
		target, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		fmt.Fprintf(&b, "%d:%s ", fd, target)
	}
	return strings.TrimSpace(b.String())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "helper:", err)
	os.Exit(3)
}

var (
	// echo sends every frame back until end of stream.
	_ = mptest.RegisterHelper("echo", func() {
		conns, _ := childConns()
		c := conns[0]
		ctx := context.Background()
		for {
			b, err := c.RecvBytes(ctx)
			if err != nil {
				return
			}
			if err := c.SendBytes(ctx, b); err != nil {
				fail(err)
			}
		}
	})
	// send sends each argument as a frame, then closes.
	_ = mptest.RegisterHelper("send", func() {
		conns, args := childConns()
		for _, a := range args {
			if err := conns[0].SendBytes(context.Background(), []byte(a)); err != nil {
				fail(err)
			}
		}
		conns[0].Close()
	})
	// poll polls its (shared) read end once and exits: it must not pull
	// part of a frame out of the pipe (CPython's test_boundaries).
	_ = mptest.RegisterHelper("poll", func() {
		conns, _ := childConns()
		if ok, err := conns[0].Poll(context.Background()); !ok || err != nil {
			fail(fmt.Errorf("poll: %v %v", ok, err))
		}
	})
	// sink reads frames until end of stream and then acknowledges with
	// the number of bytes it read on its second Conn.
	_ = mptest.RegisterHelper("sink", func() {
		conns, _ := childConns()
		ctx := context.Background()
		var buf []byte
		total := 0
		for {
			n, err := conns[0].RecvBytesInto(ctx, buf)
			if bt, ok := err.(*BufferTooShortError); ok {
				buf = bt.Msg[:cap(bt.Msg)]
				n, err = len(bt.Msg), nil
			}
			if err != nil {
				break
			}
			total += n
			if n == 0 {
				// An empty frame asks for an acknowledgement.
				if err := conns[1].SendBytes(ctx, []byte(strconv.Itoa(total))); err != nil {
					fail(err)
				}
			}
		}
	})
	// files receives frames with files and answers with the payload
	// followed by what it read from each file; it also reports the files
	// it holds open, so the parent can tell that none leaked.
	_ = mptest.RegisterHelper("files", func() {
		conns, _ := childConns()
		c := conns[0]
		ctx := context.Background()
		for {
			p, files, err := c.RecvFiles(ctx)
			if err != nil {
				return
			}
			reply := append([]byte{}, p...)
			for _, f := range files {
				b := make([]byte, 64)
				n, _ := f.ReadAt(b, 0)
				reply = append(reply, '|')
				reply = append(reply, b[:n]...)
				f.Close()
			}
			if err := c.SendBytes(ctx, reply); err != nil {
				fail(err)
			}
			if err := c.SendBytes(ctx, []byte(openFDList())); err != nil {
				fail(err)
			}
		}
	})
)

func waitChild(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Wait(); err != nil {
		t.Errorf("child %s: %v", cmd.Args, err)
	}
}
