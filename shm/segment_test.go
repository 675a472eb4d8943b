// SPDX-License-Identifier: Apache-2.0

//go:build linux

package shm

import (
	"errors"
	"fmt"
	"github.com/multiproc/multiproc/internal/mptest"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"testing"
)

// testPrefix starts the names of the named segments these tests create, so
// that the leak checks can tell them apart.
const testPrefix = "mpshmtest_"

var testSeq int

func testName(t testing.TB) string {
	testSeq++
	return fmt.Sprintf("%s%d_%d", testPrefix, os.Getpid(), testSeq)
}

func checkLeaks(t *testing.T) {
	mptest.CheckShm(t, "psm_", testPrefix)
	mptest.CheckFDs(t)
}

func TestCreateAttach(t *testing.T) {
	checkLeaks(t)
	name := testName(t)
	s, err := Create(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unlink()
	defer s.Close()
	if s.Name() != name || s.Size() != 4096 || len(s.Bytes()) != 4096 {
		t.Fatalf("name %q size %d len %d", s.Name(), s.Size(), len(s.Bytes()))
	}
	copy(s.Bytes(), "hello")
	st, err := os.Stat("/dev/shm/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != 4096 {
		t.Errorf("mode %v size %d, want 0600 and 4096", st.Mode().Perm(), st.Size())
	}
	// A leading slash is accepted; the size comes from the file.
	a, err := Open("/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Name() != name || a.Size() != 4096 || string(a.Bytes()[:5]) != "hello" {
		t.Fatalf("attached %q size %d %q", a.Name(), a.Size(), a.Bytes()[:5])
	}
	copy(a.Bytes()[10:], "world")
	if string(s.Bytes()[10:15]) != "world" {
		t.Error("write through the attached segment not visible in the creator")
	}
}

func TestCreateErrors(t *testing.T) {
	checkLeaks(t)
	name := testName(t)
	for _, size := range []int{0, -1} {
		if _, err := Create(name, size); !errors.Is(err, ErrInvalidSize) {
			t.Errorf("Create(size %d) = %v, want ErrInvalidSize", size, err)
		}
		if _, err := New(size); !errors.Is(err, ErrInvalidSize) {
			t.Errorf("New(%d) = %v, want ErrInvalidSize", size, err)
		}
	}
	for _, bad := range []string{"/", "a/b", "//x", "a\x00b", ".", "..", strings.Repeat("x", 256)} {
		if _, err := Create(bad, 8); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Create(%q) = %v, want ErrInvalidName", bad, err)
		}
		if _, err := Open(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Open(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
	if _, err := Open(name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want fs.ErrNotExist", err)
	}
	s, err := Create(name, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(name, 100); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create(existing) = %v, want fs.ErrExist", err)
	}
	if _, err := Create("/"+name, 100); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create(/existing) = %v, want fs.ErrExist", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if s.Bytes() != nil {
		t.Error("Bytes after Close is not nil")
	}
	if err := s.Unlink(); err != nil {
		t.Fatal(err)
	}
	if err := s.Unlink(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second Unlink = %v, want fs.ErrNotExist", err)
	}
	if _, err := Open(name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(unlinked) = %v, want fs.ErrNotExist", err)
	}
	a, err := New(10)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Unlink(); !errors.Is(err, ErrAnonymous) {
		t.Errorf("Unlink(anonymous) = %v, want ErrAnonymous", err)
	}
	if a.Name() != "" {
		t.Errorf("anonymous Name() = %q", a.Name())
	}
}

func TestAutoName(t *testing.T) {
	checkLeaks(t)
	re := regexp.MustCompile(`^psm_[0-9a-f]{8}$`)
	seen := map[string]bool{}
	for range 20 {
		s, err := Create("", 16)
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(s.Name()) || seen[s.Name()] {
			t.Errorf("auto name %q (duplicate: %v)", s.Name(), seen[s.Name()])
		}
		seen[s.Name()] = true
		if _, err := os.Stat("/dev/shm/" + s.Name()); err != nil {
			t.Error(err)
		}
		s.Close()
		if err := s.Unlink(); err != nil {
			t.Error(err)
		}
	}
}

// _TestSharedMemory.test_shared_memory_basics: auto-named creation retries
// when the generated name is taken.
func TestAutoNameCollision(t *testing.T) {
	checkLeaks(t)
	taken, err := Create("", 16)
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Unlink()
	defer taken.Close()
	orig := autoName
	defer func() { autoName = orig }()
	calls := 0
	autoName = func() string {
		calls++
		if calls <= 2 {
			return taken.Name()
		}
		return orig()
	}
	s, err := Create("", 16)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unlink()
	defer s.Close()
	if calls != 3 || s.Name() == taken.Name() {
		t.Errorf("%d names generated, got %q", calls, s.Name())
	}
}

var _ = mptest.RegisterHelper("shm-segment", func() {
	var named, anon Segment
	childAttach(&named, &anon)
	fmt.Printf("%s %d %q %d %s\n", named.Name(), named.Size(), anon.Name(), anon.Size(), named.Bytes()[:5])
	copy(named.Bytes(), "child")
	copy(anon.Bytes()[100:], "anon!")
	named.Close()
	anon.Close()
})

// Segments handed to a child by handle share memory; a named segment
// travels by fd, so it works even after its name is unlinked.
func TestSegmentToChild(t *testing.T) {
	checkLeaks(t)
	mptest.CheckChildren(t)
	name := testName(t)
	named, err := Create(name, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer named.Close()
	anon, err := New(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	copy(named.Bytes(), "hello")
	if err := named.Unlink(); err != nil {
		t.Fatal(err)
	}
	out := runChild(t, "shm-segment", named, anon)
	if want := name + " 1000 \"\" 4096 hello\n"; out != want {
		t.Errorf("child printed %q, want %q", out, want)
	}
	if string(named.Bytes()[:5]) != "child" || string(anon.Bytes()[100:105]) != "anon!" {
		t.Errorf("child's writes not visible: %q %q", named.Bytes()[:5], anon.Bytes()[100:105])
	}
	var s Segment
	if err := s.MultiprocAttach(nil, []byte{segHandleV1}); !errors.Is(err, ErrBadHandle) {
		t.Errorf("bad handle: %v", err)
	}
	named.Close()
	if _, _, err := named.MultiprocHandle(); !errors.Is(err, ErrClosed) {
		t.Errorf("handle of a closed segment: %v", err)
	}
}

// python3's SharedMemory(name=...) attaches to a Go segment and sees its
// bytes, and the other way round.
func TestSharedMemoryPythonInterop(t *testing.T) {
	checkLeaks(t)
	for _, v := range pythons(t) {
		t.Run(v, func(t *testing.T) {
			py := pyCmd(t, v)
			// Go creates, python attaches, reads and writes.
			s, err := Create(testName(t), 5000)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Unlink()
			defer s.Close()
			copy(s.Bytes()[4990:], "from Go")
			out := runPython(t, py, `
shm = attach(sys.argv[1])
print(shm.name, shm.size, bytes(shm.buf[4990:4997]).decode())
shm.buf[:6] = b'python'
shm.close()
`, s.Name())
			if want := s.Name() + " 5000 from Go\n"; out != want {
				t.Errorf("python printed %q, want %q", out, want)
			}
			if got := string(s.Bytes()[:6]); got != "python" {
				t.Errorf("python's write: %q", got)
			}

			// Python creates; Go attaches, reads and writes; python sees it.
			name := testName(t)
			runPython(t, py, `
shm = shared_memory.SharedMemory(name=sys.argv[1], create=True, size=3000)
untrack(shm)
shm.buf[:9] = b'py-create'
shm.close()
`, name)
			p, err := Open(name)
			if err != nil {
				os.Remove("/dev/shm/" + name)
				t.Fatal(err)
			}
			defer p.Unlink()
			defer p.Close()
			st, _ := os.Stat("/dev/shm/" + name)
			if p.Size() != 3000 || string(p.Bytes()[:9]) != "py-create" || st.Mode().Perm() != 0o600 {
				t.Errorf("size %d, %q, mode %v", p.Size(), p.Bytes()[:9], st.Mode().Perm())
			}
			if _, err := Create(name, 10); !errors.Is(err, fs.ErrExist) {
				t.Errorf("Create over python's segment: %v", err)
			}
			copy(p.Bytes()[2000:], "go-wrote")
			out = runPython(t, py, `
shm = attach(sys.argv[1])
print(bytes(shm.buf[2000:2008]).decode())
shm.close()
`, name)
			if out != "go-wrote\n" {
				t.Errorf("python read %q", out)
			}
		})
	}
}

// An anonymous segment is sealed: nobody holding its fd (a child
// included) can shrink it under another process's mapping.
func TestAnonymousSealed(t *testing.T) {
	checkLeaks(t)
	s, err := New(8192)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	files, _, err := s.MultiprocHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer closeFiles(files)
	if err := files[0].Truncate(100); err == nil {
		t.Error("a handle's fd could shrink the segment")
	}
	if err := files[0].Truncate(1 << 20); err == nil {
		t.Error("a handle's fd could grow the segment")
	}
	s.Bytes()[8191] = 1 // still mapped in full
}
