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
