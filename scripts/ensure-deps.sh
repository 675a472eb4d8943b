#!/usr/bin/env bash
# Installs what `make test` and `make generate` need on a fresh machine:
# protoc (Debian's protobuf-compiler) and python3 (for the interop tests).
set -euo pipefail
need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if ((${#need[@]})); then
  echo "ensure-deps: installing ${need[*]}" >&2
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
