#!/usr/bin/env bash
# The test suite starts its own throw-away PostgreSQL server (two sweep workers share a study
# through it); this installs Debian's server binaries when apt is usable. Without them that
# one test is skipped locally and fails in CI.
set -u
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "PostgreSQL: installing Debian's postgresql for the sweeper's multi-worker test"
  apt-get install -y -qq postgresql >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq postgresql >/dev/null 2>&1; } \
    || echo "PostgreSQL: could not install it; the multi-worker sweep test will not run"
else
  echo "PostgreSQL: not installed and apt needs root; the multi-worker sweep test will not run"
fi
