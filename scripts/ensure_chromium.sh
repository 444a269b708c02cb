#!/usr/bin/env bash
# Installs Debian's chromium when it is missing; the browser tests drive it
# through Playwright at /usr/bin/chromium (tests/browser/conftest.py).
#   CHROMIUM=/path  the binary to look for (default /usr/bin/chromium)
# As root it runs apt-get; otherwise sudo when present; else it stops with a
# message telling what to install.
set -euo pipefail
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

install=(bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null')
echo "== $CHROMIUM is missing: installing Debian's chromium (browser tests)" >&2
if [ "$(id -u)" = "0" ]; then
  "${install[@]}"
elif command -v sudo >/dev/null 2>&1; then
  sudo "${install[@]}"
else
  echo "error: $CHROMIUM is missing and this is not root (no sudo either)." >&2
  echo "       Install it as root:  apt-get install chromium   then run make test again." >&2
  exit 1
fi

if [ ! -x "$CHROMIUM" ]; then
  echo "error: installed Debian's chromium but $CHROMIUM is still missing." >&2
  exit 1
fi
