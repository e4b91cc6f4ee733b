#!/usr/bin/env bash
# Installs the Debian packages the gateway's PDF notices load at run time (WeasyPrint: Pango, HarfBuzz's subsetter,
# fontconfig and a font; listed once in services/gateway/debian-packages.txt, which the gateway image installs too), and
# poppler-utils, whose pdftotext the notice tests read PDFs with. Idempotent: does nothing when all are there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIST="$ROOT/services/gateway/debian-packages.txt"

log() { printf '[install-pdf-deps] %s\n' "$*" >&2; }

[[ -r "$LIST" ]] || { log "missing $LIST"; exit 1; }
mapfile -t wanted < <(grep -v '^\s*\(#\|$\)' "$LIST")
wanted+=(poppler-utils)

if ! command -v dpkg-query >/dev/null 2>&1; then
  log "not a Debian system: install by hand the equivalents of ${wanted[*]} (PDF notices and their tests need them)"
  exit 0
fi

missing=()
for package in "${wanted[@]}"; do
  if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)" != installed ]]; then
    missing+=("$package")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  log "missing ${missing[*]} and this is not root: install them with 'sudo apt-get install -y ${missing[*]}'"
  log "(PDF notices answer 503 and their tests fail without them)"
  exit 0
fi

log "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
log "installed ${missing[*]}"
