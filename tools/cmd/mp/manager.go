package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/multiproc/multiproc/manager"
	"github.com/spf13/cobra"
)

func managerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run a manager server",
	}
	cmd.AddCommand(managerServeCmd())
	return cmd
}

type serveOpts struct {
	addr, network, keyFile string
}

func managerServeCmd() *cobra.Command {
	var o serveOpts
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve shared objects to remote manager clients until SIGINT or SIGTERM",
		Long: `serve runs a standalone manager server (package manager) in this process:
clients that know its address and authkey connect with manager.Connect and
create and share Dicts, Lists, Queues, Locks and the other built-in types.

--addr is a unix socket path, an abstract unix name "@name", or a TCP
"host:port" (port 0 picks a free one); by default a unix socket in a new
private temporary directory. --network (unix or tcp) is guessed from --addr
when not given.

The authkey is the content of --authkey-file (a final newline is not part of
the key). The file must not be readable or writable by group or others. If
the file does not exist, a random key is written there (mode 0600); without
--authkey-file, a random key is written to a file in the temporary directory.

serve prints the address and how to connect, then runs until SIGINT or
SIGTERM (or a client's Shutdown) and shuts down cleanly: every connection
closed, every object freed, the temporary directory removed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "", "address: unix socket path, @abstract name or tcp host:port (default: a unix socket in a temporary directory)")
	f.StringVar(&o.network, "network", "", "unix or tcp (default: guessed from --addr)")
	f.StringVar(&o.keyFile, "authkey-file", "", "file holding the authkey, created with a random key if missing (default: a new key in the temporary directory)")
	return cmd
}

// guessNetwork tells a TCP host:port from a unix path or @name.
func guessNetwork(addr string) string {
	if addr == "" || strings.HasPrefix(addr, "/") || strings.HasPrefix(addr, "@") || strings.HasPrefix(addr, ".") || !strings.Contains(addr, ":") {
		return "unix"
	}
	return "tcp"
}

// readKey reads an authkey file, refusing one that others may read.
func readKey(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("authkey file %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("authkey file %s is accessible to other users (mode %04o): run chmod 600 %s", path, uint32(perm), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key := bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if len(key) == 0 {
		return nil, fmt.Errorf("authkey file %s is empty", path)
	}
	return key, nil
}

// writeKey writes a new random key (64 hex digits and a newline) to path,
// which must not exist.
func writeKey(path string) ([]byte, error) {
	var raw [32]byte
	rand.Read(raw[:])
	key := []byte(hex.EncodeToString(raw[:]))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(append(key, '\n')); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, err
	}
	return key, nil
}

func runServe(ctx context.Context, w io.Writer, o serveOpts) (err error) {
	network := o.network
	if network == "" {
		network = guessNetwork(o.addr)
	}
	if network != "unix" && network != "tcp" {
		return fmt.Errorf("manager serve: --network %q: want unix or tcp", network)
	}
	if network == "tcp" && o.addr == "" {
		return errors.New("manager serve: --network tcp needs --addr host:port")
	}
	var dir string
	if o.addr == "" || o.keyFile == "" {
		if dir, err = os.MkdirTemp("", "mp-manager-"); err != nil {
			return fmt.Errorf("manager serve: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	addr := o.addr
	if addr == "" {
		addr = filepath.Join(dir, "manager.sock")
	}
	keyFile, created := o.keyFile, false
	if keyFile == "" {
		keyFile = filepath.Join(dir, "authkey")
	}
	key, err := readKey(keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = writeKey(keyFile)
		created = true
	}
	if err != nil {
		return fmt.Errorf("manager serve: %w", err)
	}

	l, err := manager.Listen(network, addr, manager.WithAuthkey(key))
	if err != nil {
		return fmt.Errorf("manager serve: %w", err)
	}
	if network == "tcp" {
		addr = l.Addr().String() // the port picked for :0
	}
	if network == "unix" && !strings.HasPrefix(addr, "@") && !strings.HasPrefix(addr, "\x00") {
		defer os.Remove(addr) // the socket file
	}
	srv := manager.NewServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()

	how := "read from"
	if created {
		how = "written to"
	}
	fmt.Fprintf(w, "manager serving on %s %s\n", network, addr)
	fmt.Fprintf(w, "authkey %s %s\n", how, keyFile)
	fmt.Fprintf(w, `connect from Go:

	key, err := os.ReadFile(%q)
	key = bytes.TrimSuffix(key, []byte("\n"))
	c, err := manager.Connect(ctx, %q, %q, manager.WithAuthkey(key))
	defer c.Close()
	d, err := manager.NewDict[string, int](ctx, c)

stop with SIGINT or SIGTERM
`, keyFile, network, addr)

	var serveErr error
	select {
	case <-ctx.Done():
	case <-srv.Done(): // a client asked for shutdown
	case serveErr = <-served:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("manager serve: shutdown: %w", err)
	}
	if serveErr != nil && !errors.Is(serveErr, manager.ErrClosed) && !errors.Is(serveErr, context.Canceled) {
		return fmt.Errorf("manager serve: %w", serveErr)
	}
	fmt.Fprintln(w, "manager shut down")
	return nil
}
