#!/usr/bin/env bash
# Installs what tests/am_clients.rs needs: the real `amtool` (Debian package
# prometheus-alertmanager) and the real `prometheus` server (package prometheus), so the
# Alertmanager API is tested with the clients operators use. Installing must not start either
# service: the tests run their own. Idempotent. Written for Debian 12 run as root.
set -euo pipefail

apt_packages=()
command -v amtool >/dev/null 2>&1 || apt_packages+=(prometheus-alertmanager)
command -v prometheus >/dev/null 2>&1 || apt_packages+=(prometheus)

if [ "${#apt_packages[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${apt_packages[@]}"
fi
command -v amtool >/dev/null 2>&1 || { echo "prometheus.sh: amtool is not on PATH" >&2; exit 1; }
command -v prometheus >/dev/null 2>&1 || { echo "prometheus.sh: prometheus is not on PATH" >&2; exit 1; }
