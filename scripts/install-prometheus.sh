#!/usr/bin/env bash
# Installs Debian's Prometheus (the server and promtool) for the alert-rule and
# dashboard tests (tests/prometheus) into ${FASTLOANS_CACHE:-$HOME/.cache/fastloans}:
# the pinned .deb is fetched with `apt-get download` and unpacked with `dpkg -x`,
# so no service is started, no user is created and nothing outside the cache
# changes. bin/prometheus and bin/promtool link to the unpacked binaries.
# Idempotent: does nothing when the pinned version is already unpacked.
set -euo pipefail

# Debian 12's package; promtool of this version checks and unit-tests the chart's rules.
PROMETHEUS_DEB_VERSION="${PROMETHEUS_DEB_VERSION:-2.42.0+ds-5+deb12u1}"

CACHE_DIR="${FASTLOANS_CACHE:-$HOME/.cache/fastloans}"
BIN_DIR="$CACHE_DIR/bin"
TARGET="$CACHE_DIR/prometheus-$PROMETHEUS_DEB_VERSION"
DEBS="$CACHE_DIR/debs"

log() { printf '[install-prometheus] %s\n' "$*" >&2; }

link() {
  mkdir -p "$BIN_DIR"
  ln -sfn "$TARGET/usr/bin/prometheus" "$BIN_DIR/prometheus"
  ln -sfn "$TARGET/usr/bin/promtool" "$BIN_DIR/promtool"
  "$BIN_DIR/promtool" --version 2>&1 | head -n 1 >&2
}

if [[ -x "$TARGET/usr/bin/prometheus" && -x "$TARGET/usr/bin/promtool" ]]; then
  log "prometheus $PROMETHEUS_DEB_VERSION already installed"
  link
  exit 0
fi

for tool in apt-get apt-cache dpkg; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "$tool is required (a Debian machine): install prometheus $PROMETHEUS_DEB_VERSION by hand into $TARGET"
    exit 1
  fi
done

if ! apt-cache madison prometheus 2>/dev/null | grep -qF "$PROMETHEUS_DEB_VERSION"; then
  if [[ "$(id -u)" -ne 0 ]]; then
    log "the package lists do not offer prometheus $PROMETHEUS_DEB_VERSION: run 'sudo apt-get update' and retry"
    exit 1
  fi
  log "refreshing the package lists (apt-get update)"
  apt-get update -q
fi
if ! apt-cache madison prometheus 2>/dev/null | grep -qF "$PROMETHEUS_DEB_VERSION"; then
  log "Debian no longer offers prometheus $PROMETHEUS_DEB_VERSION; available:"
  apt-cache madison prometheus >&2 || true
  log "set PROMETHEUS_DEB_VERSION (and its default in this script) to one of them"
  exit 1
fi

mkdir -p "$DEBS"
deb="$(find "$DEBS" -maxdepth 1 -name "prometheus_${PROMETHEUS_DEB_VERSION//+/?}_*.deb" -print -quit)"
if [[ -z "$deb" ]]; then
  log "downloading prometheus $PROMETHEUS_DEB_VERSION (about 20 MB, apt-get download)"
  (cd "$DEBS" && apt-get download -q "prometheus=$PROMETHEUS_DEB_VERSION")
  deb="$(find "$DEBS" -maxdepth 1 -name "prometheus_${PROMETHEUS_DEB_VERSION//+/?}_*.deb" -print -quit)"
fi
if [[ -z "$deb" ]]; then
  log "apt-get download left no prometheus package in $DEBS"
  exit 1
fi

log "unpacking $(basename "$deb") into $TARGET"
rm -rf "$TARGET.partial"
dpkg -x "$deb" "$TARGET.partial"
rm -rf "$TARGET"
mv "$TARGET.partial" "$TARGET"
link
