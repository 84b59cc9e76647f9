#!/usr/bin/env bash
# Install everything the tests need, then run them.
# SQLite always; PostgreSQL too when SALESFLOW_TEST_DATABASE_URL is set (.ci/run sets it).
# Browser tests drive Debian's Chromium (/usr/bin/chromium): installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing chromium (browser tests)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "error: /usr/bin/chromium is missing; install it with: sudo apt-get install -y chromium" >&2
    exit 1
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test]'
exec .venv/bin/python -m pytest -q "$@"
