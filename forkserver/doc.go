// Package forkserver is a process.Starter whose children start in
// microseconds instead of an exec.
package forkserver
