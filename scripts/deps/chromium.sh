#!/usr/bin/env bash
# Installs what the web UI tests need: a real browser driven over WebDriver, Debian's `chromium`
# and its `chromedriver` (package chromium-driver). The tests start chromedriver themselves and
# run Chromium headless. Idempotent. Written for Debian 12 run as root.
set -euo pipefail

if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        chromium chromium-driver fonts-dejavu-core
fi
command -v chromedriver >/dev/null 2>&1 || { echo "chromium.sh: chromedriver is not on PATH" >&2; exit 1; }
command -v chromium >/dev/null 2>&1 || { echo "chromium.sh: chromium is not on PATH" >&2; exit 1; }
