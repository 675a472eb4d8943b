#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# make test-fuzz: run every fuzz target of the set for FUZZTIME each.
#
# Go 1.26's fuzzing coordinator can fail a target at the very end of a
# duration-bounded run with a bare "context deadline exceeded" and no failing
# input: it races the -fuzztime deadline against its own worker context
# (go.dev/issue/75804, fixed in Go 1.27). That is a harness failure, not a
# finding. This script tells the two apart:
#   - a real finding prints "Failing input written to ..." (and leaves the input
#     in testdata/fuzz): it fails at once, never retried;
#   - the coordinator's race prints exactly "    context deadline exceeded" as the
#     FAIL's only line and writes nothing: the target is run once more, and it
#     fails if the second run fails for any reason.
# Usage: scripts/fuzz.sh FUZZTIME (the Makefile passes $(FUZZTIME))
set -euo pipefail
cd "$(dirname "$0")/.."
go=${GO:-go}
fuzztime=${1:-10s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

coordinator_race() {
  grep -q 'Failing input written to' "$out" && return 1
  grep -A1 -E '^--- FAIL: Fuzz' "$out" | grep -qxE '    context deadline exceeded'
}

for mod in $(scripts/modules.sh); do
  [[ -n $(find "$mod" -name '*.go' -print -quit) ]] || continue
  for pkg in $(cd "$mod" && $go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}' ./...); do
    for f in $(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)' "$pkg"/*_test.go | awk '{print $2}'); do
      for attempt in 1 2; do
        echo "== fuzz $pkg $f ($fuzztime)"
        if (cd "$pkg" && $go test -run='^$' -fuzz="^$f\$" -fuzztime="$fuzztime" .) 2>&1 | tee "$out"; [[ ${PIPESTATUS[0]} -eq 0 ]]; then
          break
        fi
        if [[ $attempt -eq 1 ]] && coordinator_race; then
          echo "fuzz: $f: Go's coordinator failed at the fuzztime deadline with no input (go.dev/issue/75804); running it once more"
          continue
        fi
        echo "fuzz: $f failed" >&2
        exit 1
      done
    done
  done
done
