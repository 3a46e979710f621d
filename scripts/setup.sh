#!/bin/sh
# Installs what Eddy needs from Debian's packages (idempotent) and fetches Catch2's source.
# Runs as root, or with sudo when not root.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
PACKAGES="build-essential cmake ninja-build pkg-config libuv1-dev libssl-dev openssl emscripten nodejs python3 dpkg-dev
  chromium python3-websockets libsdl2-dev libgl-dev xvfb xauth xdotool imagemagick clang libclang-rt-14-dev"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
command -v npm >/dev/null 2>&1 || { $SUDO apt-get install -y -qq npm >/dev/null; }
# Browser tests: playwright-core from npm drives Debian's Chromium (no browser download).
if [ ! -d "$ROOT/web/node_modules/playwright-core" ]; then
  echo "setup: npm ci (web/)"
  (cd "$ROOT/web" && npm ci --no-audit --no-fund --loglevel=error)
fi
"$ROOT/scripts/fetch-third-party.sh"
echo "setup: ready"
