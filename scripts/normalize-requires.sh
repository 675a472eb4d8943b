#!/usr/bin/env bash
# `go mod tidy` records a newly required sibling module at the pseudo-version
# v0.0.0-00010101000000-000000000000; go.work's replaces are pinned at
# v0.0.0, so sibling requirements must read v0.0.0. Rewrites every go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."
for m in $(scripts/modules.sh); do
  sed -i -E 's#(github\.com/multiproc/multiproc/[a-z/]+) v0\.0\.0-00010101000000-000000000000#\1 v0.0.0#' "$m/go.mod"
done
