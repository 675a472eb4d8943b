// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"fmt"
	"runtime/debug"

	"github.com/multiproc/multiproc/internal/base/text"
	commonpb "github.com/multiproc/multiproc/proto/common/v1"
)

// MaxText bounds the message and the stack a remote error carries; longer
// ones are cut and marked.
const MaxText = 64 << 10

// Report is what an error raised in another process keeps when it reaches
// the caller: its text, its Go type's name, the remote stack for a panic,
// and the registered errors of its chain (see Register), which Unwrap
// returns so that errors.Is and errors.As match them.
//
// Report is embedded by the errors that name where the remote error
// happened (pool.RemoteError, process.ExitError, manager.RemoteError); it
// is not returned on its own.
type Report struct {
	// Type is the remote error's Go type (e.g. "*fs.PathError"), or
	// "panic".
	Type string
	// Message is the remote err.Error(), or the panic value.
	Message string
	// Stack is the remote goroutine's stack when the remote function
	// panicked.
	Stack string
	// Panicked is true when the remote function panicked.
	Panicked bool

	causes []error
}

// Unwrap returns this process's copies of the registered errors that the
// remote error's chain held: sentinels, and rebuilt values of registered
// types.
func (r *Report) Unwrap() []error { return r.causes }

// RemoteReport returns r; an error that embeds a Report answers with it,
// so Capture keeps the original type and text when a remote error is
// passed on to a third process.
func (r *Report) RemoteReport() *Report { return r }

// Capture encodes err for the wire: its text, its type and the
// registered errors of its chain. An error that embeds a Report (one that
// came from another process) keeps its original type and text.
func Capture(err error) *commonpb.RemoteError {
	re := &commonpb.RemoteError{Type: fmt.Sprintf("%T", err), Message: truncate(err.Error())}
	if r, ok := err.(interface{ RemoteReport() *Report }); ok {
		rep := r.RemoteReport()
		re.Type, re.Message, re.Stack, re.Panicked = rep.Type, rep.Message, rep.Stack, rep.Panicked
	}
	for _, id := range identities(err) {
		re.Identities = append(re.Identities, &commonpb.ErrorIdentity{Key: id.key, Value: id.value})
	}
	return re
}

// Errorf is Capture(fmt.Errorf(format, args...)): the wire form of an
// error made where it is reported, wrapping (%w) a registered sentinel
// when the receiver should match one.
func Errorf(format string, args ...any) *commonpb.RemoteError {
	return Capture(fmt.Errorf(format, args...))
}

// CapturePanic encodes a recovered panic (or, when recovered is nil, a
// runtime.Goexit) with the current goroutine's stack. Call it in the
// deferred function that recovered.
func CapturePanic(recovered any) *commonpb.RemoteError {
	msg := "the function called runtime.Goexit"
	if recovered != nil {
		msg = fmt.Sprint(recovered)
	}
	return &commonpb.RemoteError{Type: "panic", Message: truncate(msg),
		Stack: truncate(string(debug.Stack())), Panicked: recovered != nil}
}

// Decode turns a wire error back into a Report. A nil message gives a
// zero Report.
func Decode(re *commonpb.RemoteError) Report {
	if re == nil {
		return Report{}
	}
	var ids []identity
	for i, id := range re.GetIdentities() {
		if i == MaxIdentities {
			break
		}
		ids = append(ids, identity{key: id.GetKey(), value: id.GetValue()})
	}
	return Report{Type: re.GetType(), Message: re.GetMessage(), Stack: re.GetStack(),
		Panicked: re.GetPanicked(), causes: rebuild(ids)}
}

func truncate(s string) string {
	return text.Clip(s, MaxText, "\n... (truncated)")
}

// ReportOf is the Report of an error raised in this process, for a caller
// that reports local and remote failures alike: its Unwrap returns err
// itself, so err's whole chain matches.
func ReportOf(err error) Report {
	return Report{Type: fmt.Sprintf("%T", err), Message: truncate(err.Error()), causes: []error{err}}
}
