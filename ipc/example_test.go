// SPDX-License-Identifier: Apache-2.0

package ipc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/multiproc/multiproc/ipc"
)

// A duplex Pipe: what one end sends, the other receives, frame by frame.
// Here both ends live in one process; usually one goes to a child process.
func ExamplePipe() {
	ctx := context.Background()
	a, b, err := ipc.Pipe(true)
	if err != nil {
		panic(err)
	}
	defer a.Close()
	defer b.Close()

	go func() {
		for {
			msg, err := b.RecvBytes(ctx)
			if err != nil {
				return // io.EOF once a is closed
			}
			b.SendBytes(ctx, append([]byte("echo: "), msg...))
		}
	}()
	for _, m := range []string{"hello", "", "world"} {
		a.SendBytes(ctx, []byte(m))
		reply, _ := a.RecvBytes(ctx)
		fmt.Printf("%q\n", reply)
	}

	// Values go through the codec: gob for plain Go values.
	type point struct{ X, Y int }
	c, d, _ := ipc.Pipe(true)
	defer c.Close()
	defer d.Close()
	go func() {
		var p point
		d.Recv(ctx, &p)
		d.Send(ctx, point{p.Y, p.X})
	}()
	c.Send(ctx, point{1, 2})
	var p point
	c.Recv(ctx, &p)
	fmt.Println(p)
	// Output:
	// "echo: hello"
	// "echo: "
	// "echo: world"
	// {2 1}
}

// A Listener with an authkey; CPython's
// multiprocessing.connection.Client(address, authkey=b"secret") can
// connect to it just like Dial does.
func ExampleListen() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ipc-example")
	defer os.RemoveAll(dir)
	key := ipc.Authkey([]byte("secret"))

	l, err := ipc.Listen("unix", filepath.Join(dir, "listener"), key)
	if err != nil {
		panic(err)
	}
	defer l.Close()
	go func() {
		c, err := ipc.Dial(ctx, "unix", l.Addr().String(), key)
		if err != nil {
			panic(err)
		}
		c.SendBytes(ctx, []byte("authenticated hello"))
		c.Close()
	}()
	c, err := l.Accept(ctx)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	msg, _ := c.RecvBytes(ctx)
	fmt.Println(string(msg))
	_, err = c.RecvBytes(ctx)
	fmt.Println(err == io.EOF)

	// A client with the wrong key is refused on both sides.
	clientErr := make(chan error)
	go func() {
		_, err := ipc.Dial(ctx, "unix", l.Addr().String(), ipc.Authkey([]byte("guess")))
		clientErr <- err
	}()
	// The server's error names the peer: on a unix socket its process
	// ("ipc: handshake with pid 123 uid 1000: authentication failed: ..."),
	// on TCP its address.
	_, err = l.Accept(ctx)
	var he *ipc.HandshakeError
	if errors.As(err, &he) && he.Peer == fmt.Sprintf("pid %d uid %d", os.Getpid(), os.Getuid()) {
		fmt.Println("server: refused this process:", errors.Is(err, ipc.ErrAuthentication))
	}
	fmt.Println("client:", <-clientErr)
	// Output:
	// authenticated hello
	// true
	// server: refused this process: true
	// client: ipc: authentication failed: digest sent was rejected
}

// Passing an open file with a message over a unix socketpair.
func ExampleConn_SendFiles() {
	ctx := context.Background()
	a, b, err := ipc.Pipe(true, ipc.Socketpair())
	if err != nil {
		panic(err)
	}
	defer a.Close()
	defer b.Close()

	f, _ := os.CreateTemp("", "ipc-example")
	defer os.Remove(f.Name())
	f.WriteString("contents seen through the passed descriptor")
	if err := a.SendFiles(ctx, []byte("here is a file"), f); err != nil {
		panic(err)
	}
	f.Close() // the receiver has its own descriptor

	msg, files, err := b.RecvFiles(ctx)
	if err != nil {
		panic(err)
	}
	buf := make([]byte, 64)
	n, _ := files[0].ReadAt(buf, 0)
	files[0].Close()
	fmt.Println(string(msg))
	fmt.Println(string(buf[:n]))
	// Output:
	// here is a file
	// contents seen through the passed descriptor
}

// Wait multiplexes several connections, like
// multiprocessing.connection.wait.
func ExampleWait() {
	ctx := context.Background()
	r1, w1, _ := ipc.Pipe(false)
	r2, w2, _ := ipc.Pipe(false)
	defer r1.Close()
	defer r2.Close()
	w2.SendBytes(ctx, []byte("from two"))
	w1.Close()
	w2.Close()

	open := []ipc.Waitable{r1, r2}
	for len(open) > 0 {
		ready, err := ipc.Wait(ctx, open...)
		if err != nil {
			panic(err)
		}
		for _, w := range ready {
			c := w.(*ipc.Conn)
			msg, err := c.RecvBytes(ctx)
			if err != nil { // io.EOF: this writer is gone
				for i, o := range open {
					if o == w {
						open = append(open[:i], open[i+1:]...)
						break
					}
				}
				continue
			}
			fmt.Println(string(msg))
		}
	}
	// Output:
	// from two
}
