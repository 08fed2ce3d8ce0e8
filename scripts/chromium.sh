#!/usr/bin/env bash
# Make sure a headless Chromium is available for the browser tests (Debian's package; no download
# of a browser build by the test tool). Prints the executable's path.
set -euo pipefail
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; exit 0; fi
done
if [ "$(id -u)" != 0 ]; then
  echo "Chromium is missing; install Debian's 'chromium' package (needs root)" >&2
  exit 1
fi
echo "chromium.sh: the browser tests need Chromium, which is missing: installing Debian's chromium package and" \
     "its dependencies system-wide with apt-get, as root" >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
command -v chromium
