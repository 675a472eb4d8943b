#!/usr/bin/env bash
# Checks that each row of docs/robustness.md is proved by the test it names.
#
# Every row carries a marker (an HTML comment, invisible on the rendered
# page) naming the package directory of its test, the test (a subtest as
# Test/Sub), and the functions that implement the claim (FILE:FUNC, FILE
# relative to the repository, FUNC as `go tool cover -func` prints it:
# the bare name, without receiver; when methods of several types share the
# name in that file, any of them counts):
#
#   <!-- proof: forkserver TestHandOverToDeadWarmProcess covers forkserver/forkserver_linux.go:Start -->
#
# For each marker the test is run alone, with coverage of the packages of
# those functions, and every function it did not execute is reported, with
# the tests that do not exist or fail. Code run in a child process counts
# when the child exits (go test gives it GOCOVERDIR; a process killed by a
# signal writes nothing), so a marker names what runs in the test's own
# process or in one that exits: the parent side of a kill, the waiter that
# recovers, the tracker that cleans up. A row proved only in processes
# whose coverage is not collected (another binary) says "covers child" and
# is listed as not measured. Rows
# (bullets naming a test) without a marker are listed too. Exit status 1
# when any row fails or has no marker.
#
# Usage: scripts/robustness-cover.sh [OUTDIR]   (profiles go to OUTDIR/rows)
# ONLY=REGEXP checks only the markers that match it.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=github.com/multiproc/multiproc
doc=docs/robustness.md
out=$(realpath -m "${1:-.cover}")
mkdir -p "$out/rows"
GO=${GO:-go}

# Bullets that name a test (`pkg.TestX`, `pkg.ExampleX`, `pkg.FuzzX` or a conformance
# subtest) but carry no marker before the next bullet, heading or blank line.
unmarked=$(awk '
  function flush() { if (inrow && !marked) print row; inrow = 0 }
  /^- / { flush(); if ($0 ~ /`[A-Za-z_.\/]*(Test|Example|Fuzz)[A-Za-z0-9_\/]*`|`[A-Z][A-Za-z]*` of the/) { inrow = 1; marked = 0; row = NR ": " $0 } ; next }
  /^#/ || /^$/ { flush(); next }
  /<!-- proof:/ { marked = 1 }
  END { flush() }
' "$doc")

rows=0
failed=()
child=()
while IFS= read -r line; do
  # line: "proof: DIR TEST covers F1 F2 ..."
  read -r _ dir test kw funcs <<<"$line"
  if [[ $kw != covers || -z $funcs ]]; then
    failed+=("bad marker: $line")
    continue
  fi
  rows=$((rows + 1))
  if [[ $funcs == child ]]; then
    child+=("$dir $test")
    continue
  fi
  # -run pattern: each level anchored.
  re=$(awk -v t="$test" 'BEGIN { n = split(t, p, "/"); s = ""; for (i = 1; i <= n; i++) s = s (i > 1 ? "/" : "") "^" p[i] "$"; print s }')
  pkgs=$(for f in $funcs; do echo "$prefix/$(dirname "${f%%:*}")"; done | sort -u | paste -sd, -)
  prof="$out/rows/$(echo "$dir.$test" | tr '/' '_').out"
  log="$prof.log"
  if ! (cd "$dir" && $GO test -count=1 -run "$re" -coverpkg="$pkgs" -coverprofile="$prof" . >"$log" 2>&1); then
    failed+=("$dir $test: the test fails (see $log)")
    continue
  fi
  if grep -q 'no tests to run' "$log"; then
    failed+=("$dir $test: no such test")
    continue
  fi
  cov=$($GO tool cover -func="$prof")
  for f in $funcs; do
    file=${f%%:*} fn=${f##*:}
    # Methods of different types may share a name in one file: the row
    # passes when any of them ran.
    pct=$(awk -v file="$prefix/$file" -v fn="$fn" -F'\t+' '
      { split($1, a, ":"); if (a[1] == file && $2 == fn) { seen = 1; if ($3 != "0.0%") ran = $3 } }
      END { if (ran != "") print ran; else if (seen) print "0.0%" }' <<<"$cov")
    if [[ -z $pct ]]; then
      failed+=("$dir $test: $f: no such function")
    elif [[ $pct == 0.0% ]]; then
      failed+=("$dir $test: does not execute $f")
    fi
  done
done < <(grep -o '<!-- proof: [^>]* -->' "$doc" | sed -e 's/^<!-- //' -e 's/ -->$//' | grep -E -- "${ONLY:-.}")

echo "robustness proofs checked: $rows"
if ((${#child[@]})); then
  echo "proved in other processes only (coverage not measured):"
  printf '  %s\n' "${child[@]}"
fi
if [[ -n $unmarked ]]; then
  echo "rows of $doc that name no proof (add a marker):"
  sed 's/^/  /' <<<"$unmarked"
fi
if ((${#failed[@]})); then
  echo "rows whose named tests do not execute what they claim:"
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
[[ -z $unmarked ]] || exit 1
echo "every row's test executes the functions it names"
