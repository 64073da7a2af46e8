#!/usr/bin/env bash
# The review page's browser tests (tests/e2e/test_ui_browser.py) drive Debian's Chromium through
# Playwright's Python package (installed by `make install`, the dev extra). No browser is downloaded
# by Playwright (`playwright install` is never run): this installs the distribution's package and
# fails loudly if there is no working `chromium` afterwards.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends chromium
fi
# Debian's wrapper script may print shell noise on stderr; the version is the stdout line starting "Chromium"
if ! output=$(chromium --version 2>/tmp/chromium-version.err); then
  echo "browser-setup: chromium is installed but does not run: $(cat /tmp/chromium-version.err)" >&2
  exit 1
fi
version=$(printf '%s\n' "$output" | grep -m1 '^Chromium ' || true)
if [ -z "$version" ]; then
  echo "browser-setup: 'chromium --version' printed '$output', not a Chromium version" >&2
  exit 1
fi
echo "browser-setup: $version"
test -x /usr/bin/chromium || { echo "browser-setup: the tests expect /usr/bin/chromium" >&2; exit 1; }
