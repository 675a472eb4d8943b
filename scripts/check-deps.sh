#!/usr/bin/env bash
# Fails when a module imports a multiproc module it may not import
# (../shared/DESIGN.md, "Dependencies point one way only"). Workspace mode
# resolves any workspace module, so the FORBIDDEN_DEPENDENCY replaces in each
# go.mod only bite with GOWORK=off; this check covers workspace mode too,
# test files included.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=github.com/multiproc/multiproc

# allowed[m] = modules m may import directly or through others (the closure).
declare -A allowed=(
  [proto]=""
  [internal/mptest]="proto"
  [ipc]="proto"
  [process]="ipc proto"
  [tracker]="process ipc proto"
  [shm]="tracker process ipc proto"
  [syncprim]="shm tracker process ipc proto"
  [queue]="ipc syncprim shm tracker process proto"
  [pool]="process ipc queue syncprim shm tracker proto"
  [manager]="process ipc syncprim shm tracker proto"
  [forkserver]="process ipc proto"
  [tools]="*"
  [docs]="*"
)
# internal/mptest is a test-only helper: any module may use it in tests.
status=0
for mod in $(scripts/modules.sh); do
  if [[ -z ${allowed[$mod]+x} ]]; then
    echo "check-deps: module $mod is not in the dependency table (scripts/check-deps.sh)" >&2
    status=1; continue
  fi
  ok=" ${allowed[$mod]} internal/mptest $mod "
  [[ ${allowed[$mod]} == "*" ]] && continue
  imports=$(cd "$mod" && go list -e -f '{{join .Imports "\n"}}{{"\n"}}{{join .TestImports "\n"}}{{"\n"}}{{join .XTestImports "\n"}}' ./... | sort -u | grep "^$prefix/" || true)
  for imp in $imports; do
    rest=${imp#"$prefix/"}
    target=""
    for cand in $(scripts/modules.sh); do
      if [[ $rest == "$cand" || $rest == "$cand"/* ]]; then
        [[ ${#cand} -gt ${#target} ]] && target=$cand
      fi
    done
    [[ -z $target || $target == "$mod" ]] && continue
    if [[ $ok != *" $target "* ]]; then
      echo "check-deps: $mod imports $imp, but $mod may not depend on $target" >&2
      status=1
    fi
  done
done
[[ $status == 0 ]] && echo "check-deps: dependency direction OK"
exit $status
