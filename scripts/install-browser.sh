#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (tests/browser), which drive it
# through Playwright with executable_path=/usr/bin/chromium; Playwright's own
# browser downloads are never used. Idempotent: does nothing when Chromium is there.
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

log() { printf '[install-browser] %s\n' "$*" >&2; }

if [[ -x "$CHROMIUM" ]]; then
  log "$("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM") already installed"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  log "$CHROMIUM is missing and this is not root: install it with 'sudo apt-get install -y chromium'"
  log "(the browser tests fail without it)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  log "$CHROMIUM is missing and apt-get is not available: install Chromium at $CHROMIUM by hand"
  exit 0
fi

log "installing chromium with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
log "$("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM") installed"
