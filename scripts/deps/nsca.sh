#!/usr/bin/env bash
# Installs what the NSCA intake tests need: the real `send_nsca` (Debian package nsca-client),
# so the NSCA server in src/checks/nsca.rs is tested with the client operators use. Only the
# client is installed, no daemon is started. Idempotent. Written for Debian 12 run as root.
set -euo pipefail

if ! command -v send_nsca >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        nsca-client
fi
command -v send_nsca >/dev/null 2>&1 || { echo "nsca.sh: send_nsca is not on PATH" >&2; exit 1; }
