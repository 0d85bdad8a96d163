#!/usr/bin/env bash
# Installs what tests/email_smtp.rs needs: python3 with aiosmtpd (tests/support/smtp_sink.py).
# Idempotent: does nothing when aiosmtpd is already importable.
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1; then
    echo "smtp.sh: python3 is required (apt-get install python3 python3-pip)" >&2
    exit 1
fi
if python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
    exit 0
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "smtp.sh: pip is required (apt-get install python3-pip)" >&2
    exit 1
fi
# Debian's python marks its site-packages as externally managed; allow the install there.
python3 -m pip install --quiet --disable-pip-version-check aiosmtpd \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages aiosmtpd
python3 -c 'import aiosmtpd'
