#!/usr/bin/env bash
# Installs Prometheus and promtool (Debian package `prometheus`) when either is missing.
# Idempotent: does nothing when both are on PATH. `make test` runs it: the integration test
# tests/integration/test_observability.py runs a real Prometheus server.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "installing prometheus and promtool (Debian package prometheus)" >&2
$SUDO apt-get update -qq
# policy-rc.d or a missing init keeps the packaged service from starting: the tests start
# their own server on a free port.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus >/dev/null
prometheus --version 2>&1 | head -n 1 >&2
