#!/usr/bin/env bash
# Prints the directory of every module in the repository, one a line.
set -euo pipefail
cd "$(dirname "$0")/.."
find . -name go.mod -not -path './.bin/*' -not -path '*/testdata/*' -printf '%h\n' | sed 's|^\./||' | sort
