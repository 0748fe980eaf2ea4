#!/usr/bin/env bash
# The portal in a real browser: headless Chromium from Debian, driven by Playwright for
# Python, against the real `steward serve` binary. Installs what it needs on a clean Debian
# machine (the chromium package; a virtualenv with tests/portal/requirements.txt). Playwright
# is never asked to download a browser: the suite launches /usr/bin/chromium.
#
#   tests/portal/run.sh                                              # on SQLite
#   STEWARD_PORTAL_DATABASE_URL=postgres://…/fresh_db tests/portal/run.sh   # on PostgreSQL
#
# STEWARD_BIN names the binary (default target/debug/steward, built when missing).
# Screenshots of the main pages go to STEWARD_PORTAL_SCREENSHOTS (default
# target/portal-screenshots/<sqlite|postgres>); the folder is printed.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '\n==> %s\n' "$*" >&2; }

if [ ! -x /usr/bin/chromium ]; then
  log "Installing Chromium (Debian package)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi

venv=target/portal-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || {
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    python3 -m venv "$venv"
  }
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/portal/requirements.txt

export STEWARD_BIN=${STEWARD_BIN:-$PWD/target/debug/steward}
if [ ! -x "$STEWARD_BIN" ]; then
  log "Building steward"
  cargo build --locked --bin steward
fi

backend=sqlite
case "${STEWARD_PORTAL_DATABASE_URL:-}" in postgres*) backend=postgres ;; esac
export STEWARD_PORTAL_SCREENSHOTS=${STEWARD_PORTAL_SCREENSHOTS:-$PWD/target/portal-screenshots/$backend}
log "Portal in Chromium on $backend; screenshots in $STEWARD_PORTAL_SCREENSHOTS"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/portal
echo "Screenshots of the portal ($backend): $STEWARD_PORTAL_SCREENSHOTS"
