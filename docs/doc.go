// SPDX-License-Identifier: Apache-2.0

// Package docs holds multiproc's guides (Markdown beside this file) and
// runnable example programs (examples/), which its tests run, so that the
// README and the guides cannot drift from the code.
package docs
