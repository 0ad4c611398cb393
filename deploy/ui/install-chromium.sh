#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium when it is missing. Idempotent. `make test` runs
# it: tests/integration/test_ui.py renders a worker's user page in a real browser.
set -euo pipefail

if command -v chromium >/dev/null; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "installing chromium (Debian package)" >&2
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >/dev/null
chromium --version >&2
