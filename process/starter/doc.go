// SPDX-License-Identifier: Apache-2.0

// Package starter is the plumbing below package process, for two kinds of
// code that users of process never write:
//
//   - a Starter in another module (the forkserver's): it receives a
//     Request, gives the child its files however it can, and returns a
//     Child to wait on and signal (ChildFromPidfd watches a child it
//     started itself); a process it pre-started waits in Init through an
//     init hook (RegisterInitHook), closes what it should not have
//     inherited (CloseStrayFDs) and becomes the child with RunChild;
//   - a module that gives every process of the tree a handle (the
//     resource tracker's connection): RegisterInherited at package level,
//     Inherited in the child.
//
// process.Starter is the interface; process/processtest checks any
// Starter against Process's behaviour.
package starter

// A build for another system stops in linuxonly with one clear message.
import _ "github.com/multiproc/multiproc/internal/base/linuxonly"
