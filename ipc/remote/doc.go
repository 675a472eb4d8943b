// SPDX-License-Identifier: Apache-2.0

// Package remote gives errors their identity across processes.
//
// An error returned in another process (a pool task, a Process function, a
// manager method) reaches the caller as a value that keeps the remote
// error's text, its Go type's name and, for a panic, the remote stack.
// Its identity survives too when it is registered: register sentinels and
// error types at package level, as tasks are, so that every process of the
// program (the same binary) knows them.
//
//	var ErrNotFound = remote.Register(errors.New("store: not found"))
//
//	type QuotaError struct{ Used, Limit int }
//
//	func (e *QuotaError) Error() string { ... }
//
//	func init() { remote.RegisterType[*QuotaError]() }
//
// Then, however many times the remote side wrapped them,
// errors.Is(err, ErrNotFound) and errors.As(err, &qe) hold on the caller's
// side, and qe carries the remote value's exported fields. An unregistered
// error keeps its text and type name but matches nothing. A few standard
// sentinels are registered here: context.Canceled,
// context.DeadlineExceeded, io.EOF, io.ErrUnexpectedEOF, fs.ErrNotExist,
// fs.ErrExist, fs.ErrPermission, os.ErrDeadlineExceeded and
// errors.ErrUnsupported.
//
// Nothing on the wire is executed: a sentinel travels as a key, a typed
// error as its key and its value's gob encoding (exported fields only),
// decoded into a fresh value of the registered type. Sizes are bounded
// (MaxIdentities, MaxValueSize); what exceeds them is dropped, never
// allocated.
//
// Report is the one shape that pool.RemoteError, process.ExitError and
// manager.RemoteError embed: each adds where the error happened.
package remote
