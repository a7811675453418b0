#!/usr/bin/env bash
# Makes sure Debian's Chromium is there for the browser tests (web/e2e):
# installs the `chromium` package when it is missing (root with apt-get), and
# fails with a clear message otherwise. `npx playwright install` cannot be
# used here: it downloads a browser build from outside the package registries.
set -eu
bin="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$bin" ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "ensure-chromium: installing Debian's chromium for the browser tests" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi
if [ ! -x "$bin" ]; then
  echo "ensure-chromium: $bin not found; install Debian's 'chromium' package (or set CHROMIUM=/path/to/chromium)" >&2
  exit 1
fi
