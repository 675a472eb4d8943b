#!/usr/bin/env bash
# make release-check: proves that the module set, at the version in VERSION,
# resolves for a Go program outside this repository exactly as it will once
# the tags <module>/<version> are pushed.
#
# 1. tools/cmd/modset writes a file-based module proxy (GOPROXY protocol:
#    @v/list, .info, .mod, .zip built with golang.org/x/mod/zip) of every
#    module, from the work tree.
# 2. In a temporary directory, with GOWORK=off and an empty module cache, a
#    fresh consumer module `go get`s pool, shm and syncprim at that version;
#    every other module comes from the usual proxy (the machine's module cache
#    first, as a file proxy, so a warm machine needs no network).
# 3. It builds and runs the README's quickstart (a pool Map on worker
#    processes) and an shm + syncprim program, checks that the code of the
#    test-only module internal/mptest is not downloaded to build them, that
#    go mod tidy (which loads dependencies' tests, so needs mptest) resolves,
#    and that every module of the set resolves and builds the same way.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$(cat VERSION)
prefix=github.com/multiproc/multiproc
go=${GO:-go}

work=$(mktemp -d "${TMPDIR:-/tmp}/multiproc-release-check.XXXXXX")
cleanup() { chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

fail() {
  echo >&2
  echo "release-check: FAILED: $*" >&2
  echo "release-check: the module set at $version does not resolve for a module outside the repository" >&2
  echo "release-check: as it would from the public proxy once the tags <module>/$version are pushed." >&2
  exit 1
}
run() {
  echo "\$ $*"
  "$@" || fail "'$*' exited with status $?"
}

echo "== release-check: the module set at $version, served from the work tree"
$go run "$prefix/tools/cmd/modset" gomod -check || fail "a go.mod requires a sibling at another version than VERSION"
$go run "$prefix/tools/cmd/modset" proxy "$work/proxy" || fail "could not build the module proxy"
libs=$($go run "$prefix/tools/cmd/modset" modules)

upstream_cache=$($go env GOMODCACHE)
upstream_proxy=$($go env GOPROXY)
mkdir -p "$work/consumer/quickstart" "$work/consumer/shmlock"
cp docs/examples/quickstart/main.go "$work/consumer/quickstart/"
cp scripts/consumer/shmlock/main.go "$work/consumer/shmlock/"
cd "$work/consumer"

# The consumer's environment: what a user has, plus the file proxy in front.
unset GOFLAGS
export GOWORK=off GOTOOLCHAIN=local
export GOMODCACHE="$work/modcache"
export GOPROXY="file://$work/proxy,file://$upstream_cache/cache/download,$upstream_proxy"
export GONOSUMDB="$prefix" # not in the checksum database before it is published
echo "GOPROXY=$GOPROXY"

echo "== a fresh module outside the repository"
run $go mod init example.com/consumer
run $go get "$prefix/pool@$version" "$prefix/shm@$version" "$prefix/syncprim@$version"
run $go build -o bin/ ./...

echo "== the test-only helper stays out of the consumer's build"
if $go list -deps ./... | grep -q "^$prefix/internal/mptest"; then
  fail "a package of the consumer's build imports $prefix/internal/mptest"
fi
if [[ -d $GOMODCACHE/$prefix/internal/mptest@$version ]]; then
  fail "go get and go build downloaded the code of $prefix/internal/mptest"
fi
echo "ok: go get and go build did not download $prefix/internal/mptest (only its go.mod, as pool's tests require it)"

echo "== the quickstart: a pool Map on worker processes"
out=$(./bin/quickstart) || fail "the quickstart program failed"
echo "$out"
[[ $out == "[1 4 9 16 25]" ]] || fail "the quickstart printed '$out', want '[1 4 9 16 25]'"

echo "== shm + syncprim: four processes add to a shared counter under a lock"
out=$(./bin/shmlock) || fail "the shm + syncprim program failed"
echo "$out"
[[ $out == "4000" ]] || fail "the shm + syncprim program printed '$out', want '4000'"

echo "== the module set in the consumer's build list"
run $go list -m all | grep "^$prefix/" | tee "$work/mods"
if grep -v " $version\$" "$work/mods"; then
  fail "a module of the set resolved at another version than $version"
fi

# go mod tidy loads the tests of dependencies too (as documented), so it
# fetches internal/mptest, which pool's tests import: it must resolve.
echo "== go mod tidy (loads the tests of pool, shm and syncprim too)"
run $go mod tidy
$go mod why -m "$prefix/internal/mptest" | tail -n +2

echo "== every module of the set resolves and builds"
args=() pkgs=()
for m in $libs; do args+=("$prefix/$m/...@$version"); pkgs+=("$prefix/$m/..."); done
run $go get "${args[@]}"
run $go build "${pkgs[@]}"

echo "release-check: ok: pool, shm and syncprim at $version resolve, build and run from outside the repository"
