#!/usr/bin/env bash
# Installs what tests/alerta_server.rs needs to run a real Alerta server: the PostgreSQL server
# programs (initdb, pg_ctl, postgres, createdb), a `postgres` user to run them as when the tests
# run as root, and the Alerta server (`alertad`, with psycopg2) plus the `alerta` CLI.
# Idempotent; starts nothing. Written for Debian 12 run as root (apt-get, useradd).
set -euo pipefail

have_pg_bins() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 \
        && command -v postgres >/dev/null 2>&1; then
        return 0
    fi
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            return 0
        fi
    done
    return 1
}

need_alertad=0
command -v alertad >/dev/null 2>&1 || need_alertad=1

apt_packages=()
have_pg_bins || apt_packages+=(postgresql)
command -v createdb >/dev/null 2>&1 || apt_packages+=(postgresql-client)
if [ "$need_alertad" = 1 ]; then
    # psycopg2 (alerta-server[postgres]) is built from source: it needs pg_config, a C
    # compiler and Python's headers.
    command -v pg_config >/dev/null 2>&1 || apt_packages+=(libpq-dev)
    command -v gcc >/dev/null 2>&1 || apt_packages+=(gcc)
    py_include=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    [ -f "$py_include/Python.h" ] || apt_packages+=(python3-dev)
fi

if [ "${#apt_packages[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # Installing must not start a server: refuse service starts while apt runs, and tell
    # postgresql-common not to create a default cluster (the test makes its own).
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${apt_packages[@]}"
fi

# PostgreSQL refuses to run as root; the test then runs it as `postgres` (via runuser).
if [ "$(id -u)" = 0 ] && ! id -u postgres >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
fi

if [ "$need_alertad" = 1 ]; then
    pip_flags=(--quiet --disable-pip-version-check)
    # Debian's own python3 is marked externally managed (PEP 668).
    if python3 -c 'import os, sysconfig, sys
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED")) else 1)'; then
        pip_flags+=(--break-system-packages)
    fi
    python3 -m pip install "${pip_flags[@]}" 'alerta-server[postgres]' alerta
    # pyenv puts console scripts behind shims that need a rehash.
    if command -v pyenv >/dev/null 2>&1; then
        pyenv rehash
    fi
    command -v alertad >/dev/null 2>&1 || {
        echo "alertad was installed but is not on PATH ($(python3 -m site --user-base)/bin?)" >&2
        exit 1
    }
fi
