// SPDX-License-Identifier: Apache-2.0

package remote_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/multiproc/multiproc/ipc/remote"
	commonpb "github.com/multiproc/multiproc/proto/common/v1"
)

var (
	errNotFound   = remote.Register(errors.New("store: not found"))
	errUnregister = errors.New("store: never registered")
)

type quotaError struct {
	Used, Limit int
	Tags        []string
}

func (e *quotaError) Error() string { return fmt.Sprintf("quota: %d of %d", e.Used, e.Limit) }

type valueError struct{ Code int }

func (e valueError) Error() string { return fmt.Sprintf("code %d", e.Code) }

func init() {
	remote.RegisterType[*quotaError]()
	remote.RegisterType[valueError]()
}

// wrapped is an error that embeds a Report, as pool.RemoteError does.
type wrapped struct{ remote.Report }

func (w *wrapped) Error() string { return "remote: " + w.Message }

// overTheWire encodes err as a sending process would, marshals it, and
// decodes it as the receiving process would.
func overTheWire(t *testing.T, err error) error {
	t.Helper()
	b, merr := proto.Marshal(remote.Capture(err))
	if merr != nil {
		t.Fatal(merr)
	}
	var re commonpb.RemoteError
	if uerr := proto.Unmarshal(b, &re); uerr != nil {
		t.Fatal(uerr)
	}
	return &wrapped{remote.Decode(&re)}
}

func TestIdentityCrossesTheWire(t *testing.T) {
	tests := []struct {
		name string
		err  error
		is   []error
		not  []error
	}{
		{"sentinel", errNotFound, []error{errNotFound}, []error{errUnregister, context.Canceled}},
		{"wrapped three times", fmt.Errorf("a: %w", fmt.Errorf("b: %w", fmt.Errorf("c: %w", errNotFound))), []error{errNotFound}, nil},
		{"joined", errors.Join(errUnregister, context.DeadlineExceeded), []error{context.DeadlineExceeded}, []error{errUnregister}},
		{"unregistered", errUnregister, nil, []error{errUnregister, errNotFound}},
		{"standard: fs", &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrNotExist}, []error{fs.ErrNotExist}, []error{fs.ErrExist}},
		{"standard: errno", &fs.PathError{Op: "open", Path: "/x", Err: os.ErrPermission}, []error{fs.ErrPermission}, nil},
		{"context", fmt.Errorf("task: %w", context.Canceled), []error{context.Canceled}, []error{context.DeadlineExceeded}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := overTheWire(t, tt.err)
			for _, target := range tt.is {
				if !errors.Is(got, target) {
					t.Errorf("errors.Is(%v, %v) = false, want true", got, target)
				}
			}
			for _, target := range tt.not {
				if errors.Is(got, target) {
					t.Errorf("errors.Is(%v, %v) = true, want false", got, target)
				}
			}
			var w *wrapped
			errors.As(got, &w)
			if w.Message != tt.err.Error() || w.Type != fmt.Sprintf("%T", tt.err) {
				t.Errorf("report = %q, %q; want %q, %T", w.Type, w.Message, tt.err.Error(), tt.err)
			}
		})
	}
}

func TestTypedErrorCrossesTheWire(t *testing.T) {
	sent := &quotaError{Used: 7, Limit: 5, Tags: []string{"a", "b"}}
	got := overTheWire(t, fmt.Errorf("upload: %w", fmt.Errorf("check: %w", sent)))
	var qe *quotaError
	if !errors.As(got, &qe) {
		t.Fatalf("errors.As(%v, *quotaError) = false", got)
	}
	if diff := cmp.Diff(sent, qe); diff != "" {
		t.Errorf("rebuilt value (-want +got):\n%s", diff)
	}
	if qe == sent {
		t.Error("the rebuilt value is the sender's pointer")
	}
	var ve valueError
	if !errors.As(overTheWire(t, fmt.Errorf("x: %w", valueError{Code: 42})), &ve) || ve.Code != 42 {
		t.Errorf("a value-typed error: got %+v", ve)
	}
}

// A remote error passed on to a third process keeps its original type,
// text and identities.
func TestRelayKeepsIdentity(t *testing.T) {
	first := overTheWire(t, fmt.Errorf("inner: %w", errNotFound))
	second := overTheWire(t, first)
	if !errors.Is(second, errNotFound) {
		t.Errorf("relayed error lost its identity: %v", second)
	}
	var w *wrapped
	errors.As(second, &w)
	if w.Message != "inner: store: not found" || w.Type != "*fmt.wrapError" {
		t.Errorf("relayed report = %q, %q", w.Type, w.Message)
	}
}

func TestPanicAndBounds(t *testing.T) {
	var re *commonpb.RemoteError
	func() {
		defer func() { re = remote.CapturePanic(recover()) }()
		panic(strings.Repeat("x", remote.MaxText+10))
	}()
	if !re.Panicked || re.Type != "panic" || !strings.Contains(re.Stack, "TestPanicAndBounds") {
		t.Errorf("panic report: panicked=%v type=%q stack has test=%v", re.Panicked, re.Type, strings.Contains(re.Stack, "TestPanicAndBounds"))
	}
	if len(re.Message) > remote.MaxText+100 {
		t.Errorf("message of %d bytes not cut at %d", len(re.Message), remote.MaxText)
	}
	// A typed value over MaxValueSize travels as text only.
	big := &quotaError{Tags: []string{strings.Repeat("t", remote.MaxValueSize)}}
	if errors.As(overTheWire(t, big), new(*quotaError)) {
		t.Error("an oversized value was rebuilt")
	}
	// Many identities on the wire: at most MaxIdentities are rebuilt.
	var many commonpb.RemoteError
	for range 1000 {
		many.Identities = append(many.Identities, &commonpb.ErrorIdentity{Key: "s:*errors.errorString:store: not found"})
	}
	r := remote.Decode(&many)
	if n := len(r.Unwrap()); n > remote.MaxIdentities {
		t.Errorf("rebuilt %d identities, want at most %d", n, remote.MaxIdentities)
	}
}

// A message that is not UTF-8, or that the bound cuts inside a rune,
// still makes a RemoteError protobuf can marshal (its strings must be
// UTF-8): the bad bytes become U+FFFD.
func TestMessageNotUTF8(t *testing.T) {
	for _, msg := range []string{
		"path \xff\xfe not found",
		strings.Repeat("x", remote.MaxText-1) + "€ and more",
	} {
		re := remote.Capture(errors.New(msg))
		if _, err := proto.Marshal(re); err != nil {
			t.Fatalf("message of %d bytes: %v", len(msg), err)
		}
		if got := remote.Decode(re).Message; !strings.HasPrefix(got, msg[:4]) {
			t.Errorf("message %.20q... came back as %.20q...", msg, got)
		}
	}
}

func TestRegisterMistakes(t *testing.T) {
	if remote.Register(errNotFound) != errNotFound {
		t.Error("registering the same sentinel twice should return it")
	}
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	mustPanic("a second sentinel with the same text", func() { remote.Register(errors.New("store: not found")) })
	mustPanic("nil", func() { remote.Register(nil) })
}

func TestReportOfKeepsTheLocalChain(t *testing.T) {
	local := fmt.Errorf("decode: %w", errUnregister) // unregistered: matches locally only
	w := &wrapped{remote.ReportOf(local)}
	if !errors.Is(w, errUnregister) {
		t.Error("ReportOf lost the local chain")
	}
}

func FuzzDecode(f *testing.F) {
	for _, err := range []error{errNotFound, &quotaError{Used: 1}, fmt.Errorf("x: %w", valueError{3})} {
		b, _ := proto.Marshal(remote.Capture(err))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var re commonpb.RemoteError
		if proto.Unmarshal(b, &re) != nil {
			return
		}
		r := remote.Decode(&re)
		if len(r.Unwrap()) > remote.MaxIdentities {
			t.Fatalf("%d identities rebuilt", len(r.Unwrap()))
		}
		// Whatever was rebuilt encodes again without panicking.
		remote.Capture(&wrapped{r})
	})
}

func Example() {
	// At package level, in every process of the program:
	//   var ErrNotFound = remote.Register(errors.New("store: not found"))
	// A worker's task returns fmt.Errorf("lookup %q: %w", key, ErrNotFound);
	// the caller receives it from the other process and still matches it.
	sent := fmt.Errorf("lookup %q: %w", "k", errNotFound)
	b, _ := proto.Marshal(remote.Capture(sent))
	var re commonpb.RemoteError
	_ = proto.Unmarshal(b, &re)
	received := &wrapped{remote.Decode(&re)}
	fmt.Println(received.Message, errors.Is(received, errNotFound))
	// Output: lookup "k": store: not found true
}
