#!/usr/bin/env bash
# Installs, from Debian's packages, the tools named on the command line that
# this machine lacks: python3 (the interop tests: make test) and protoc
# (make generate only; no test needs it). Usage: scripts/ensure-deps.sh python3 protoc
set -euo pipefail
need=()
for tool in "$@"; do
  case $tool in
    protoc) command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler) ;;
    python3) command -v python3 >/dev/null 2>&1 || need+=(python3) ;;
    *) echo "ensure-deps: unknown tool $tool" >&2; exit 2 ;;
  esac
done
if ((${#need[@]})); then
  echo "ensure-deps: installing ${need[*]} (apt-get)" >&2
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
