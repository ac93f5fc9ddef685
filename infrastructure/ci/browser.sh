#!/usr/bin/env bash
# The browser the dashboard's browser tests drive: Debian's Chromium, from apt, never a
# Playwright download (CI has no route to Playwright's CDN), and the emoji font the status
# badges need. Idempotent: installs only what is missing. MLOPS_CHROMIUM points the tests (and
# this script) at another Chromium-family browser already installed, e.g. Google Chrome on a
# GitHub runner. Needs root or passwordless sudo when something is missing.
set -euo pipefail

CHROMIUM=${MLOPS_CHROMIUM:-/usr/bin/chromium}
packages=()
[ -x "$CHROMIUM" ] || packages+=(chromium fonts-dejavu-core)
# the emoji font: the dashboard's status badges in the screenshots, instead of empty boxes
[ -d /usr/share/fonts/truetype/noto ] || packages+=(fonts-noto-color-emoji)

if [ ${#packages[@]} -gt 0 ]; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
"$CHROMIUM" --version 2>/dev/null || echo "browser at $CHROMIUM"
