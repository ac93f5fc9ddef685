#!/usr/bin/env bash
# The browser the dashboard's browser tests drive: Debian's Chromium, from apt, never a
# Playwright download (CI has no route to Playwright's CDN). Idempotent: does nothing when
# /usr/bin/chromium is already there. Needs root (CI runs as root) or passwordless sudo.
set -euo pipefail

CHROMIUM=${MLOPS_CHROMIUM:-/usr/bin/chromium}
# the emoji font: the dashboard's status badges in the screenshots, instead of empty boxes
if [ -x "$CHROMIUM" ] && [ -d /usr/share/fonts/truetype/noto ]; then
  "$CHROMIUM" --version 2>/dev/null || echo "chromium at $CHROMIUM"
  exit 0
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq
as_root apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fonts-noto-color-emoji >/dev/null
"$CHROMIUM" --version
