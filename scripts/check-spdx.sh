#!/usr/bin/env bash
# Fails when a Go or proto file lacks the licence's SPDX line at its top
# (within the first three lines, so a generated file's header may come first).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=$(git ls-files --cached --others --exclude-standard '*.go' '*.proto' | while read -r f; do
  [[ -f $f ]] || continue
  head -n 3 "$f" | grep -q 'SPDX-License-Identifier: Apache-2.0' || echo "$f"
done)
if [[ -n $missing ]]; then
  echo "check-spdx: these files lack '// SPDX-License-Identifier: Apache-2.0' in their first lines:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "check-spdx: every Go and proto file carries the SPDX line"
