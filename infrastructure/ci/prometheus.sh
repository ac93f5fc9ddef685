#!/usr/bin/env bash
# The Prometheus binary tests/integration/dashboard/test_replicas.py runs (a real Prometheus scraping several real
# predictors): Debian's package, downloaded with apt and unpacked, not installed. The package
# depends on ~230 MB of JavaScript for its web UI (libjs-moment-timezone alone is 218 MB),
# which the tests never open; the binary itself is one static Go file (50 MB; the package is 19 MB to
# download, 95 MB unpacked). Idempotent: a second run downloads nothing.
#
#   infrastructure/ci/prometheus.sh     print the directory that holds `prometheus`
#
# A `prometheus` already on PATH is used as it is. Otherwise the binary lands under
# $SERVICES_DIR/prometheus (default /tmp/mlops-test-services, next to the test servers of
# services.sh). Downloading needs apt's package lists: `apt-get update` runs once, as root or
# with passwordless sudo, when the package is not known yet.
set -euo pipefail

if found=$(command -v prometheus); then
  dirname "$found"
  exit 0
fi

DIR=${SERVICES_DIR:-/tmp/mlops-test-services}/prometheus
BIN="$DIR/usr/bin"
if [ ! -x "$BIN/prometheus" ]; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
  mkdir -p "$DIR/download"
  chmod a+rwx "$DIR/download" # apt's sandbox user writes the file when root runs this
  apt-cache show prometheus >/dev/null 2>&1 || as_root apt-get update -qq
  # apt-get download writes into the current directory, as whoever runs it
  (cd "$DIR/download" && apt-get download -qq prometheus)
  dpkg-deb -x "$DIR"/download/prometheus_*.deb "$DIR"
  rm -rf "$DIR/download"
fi
"$BIN/prometheus" --version 2>&1 | head -n 1 >&2
echo "$BIN"
