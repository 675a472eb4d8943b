#!/usr/bin/env bash
# make cross: go vet every package of the set for other systems and
# architectures. multiproc needs Linux, on any architecture:
#   - for linux/<arch> every package must vet cleanly;
#   - for any other GOOS the build must stop with one message, from package
#     internal/base/linuxonly, "multiproc needs Linux", and nothing else (no raw
#     "undefined: unix.Eventfd"). docs/architecture.md, "Platforms".
# Usage: scripts/cross.sh GOOS/GOARCH... (the Makefile passes CROSS)
set -euo pipefail
cd "$(dirname "$0")/.."
go=${GO:-go}
pkgs=$(scripts/modules.sh | sed 's|^|github.com/multiproc/multiproc/|; s|$|/...|')
status=0
for t in "$@"; do
  goos=${t%/*} goarch=${t#*/}
  echo "== vet GOOS=$goos GOARCH=$goarch"
  if [[ $goos == linux ]]; then
    # shellcheck disable=SC2086
    GOOS=$goos GOARCH=$goarch $go vet $pkgs || { echo "cross: $t: go vet failed" >&2; status=1; }
    continue
  fi
  # shellcheck disable=SC2086
  if out=$(GOOS=$goos GOARCH=$goarch $go vet $pkgs 2>&1); then
    echo "cross: $t: go vet passed, but a build for $goos must stop with \"multiproc needs Linux\"" >&2
    status=1; continue
  fi
  other=$(grep -v -e '^# github.com/multiproc/multiproc/internal/base/linuxonly$' -e 'multiproc needs Linux' <<<"$out" || true)
  if [[ -n $other ]] || ! grep -q 'multiproc needs Linux' <<<"$out"; then
    echo "cross: $t: want the one message \"multiproc needs Linux\", got:" >&2
    echo "$out" >&2
    status=1; continue
  fi
  echo "stops as intended: $(grep 'multiproc needs Linux' <<<"$out")"
done
exit $status
