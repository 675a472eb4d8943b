// SPDX-License-Identifier: Apache-2.0

package pool

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenArgFileIdentity: a worker reopens a handle's descriptor through
// /proc only if it is still the file the parent described (device and
// inode): a number closed at the end of its call and reused for another
// file is refused, and so is a number no longer open.
func TestOpenArgFileIdentity(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "arg")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	kf := keptFile{fd: int(f.Fd()), dev: st.Dev, ino: st.Ino}
	g, err := openArgFile(os.Getpid(), kf)
	if err != nil {
		t.Fatalf("the same file: %v", err)
	}
	g.Close()
	other := kf
	other.ino++
	if g, err := openArgFile(os.Getpid(), other); err == nil {
		g.Close()
		t.Fatal("another file behind the number: accepted")
	}
	gone := kf
	gone.fd = 1 << 20
	if g, err := openArgFile(os.Getpid(), gone); err == nil {
		g.Close()
		t.Fatal("a number not open: accepted")
	}
}
