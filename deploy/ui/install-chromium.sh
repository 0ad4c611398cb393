#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium and a colour emoji font (category names may hold
# emoji; without the font they render as boxes) when missing. Idempotent, and quick when both
# are there. `make test` runs it: tests/integration/test_ui.py renders a worker's user page in
# a real browser.
set -euo pipefail

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

need=()
if ! command -v chromium >/dev/null; then
    need+=(chromium fonts-dejavu-core)
fi
if ! installed fonts-noto-color-emoji; then
    need+=(fonts-noto-color-emoji)
fi
if [ "${#need[@]}" -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "installing ${need[*]} (Debian packages)" >&2
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
chromium --version >&2
