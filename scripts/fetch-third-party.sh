#!/bin/sh
# Fetches Catch2 3.7.x (amalgamated) from Debian's source packages into third_party/ (git-ignored,
# never committed). apt runs with private state in a temp dir: /etc/apt is not changed and nothing
# is installed. bookworm only ships Catch2 2.x, so the source comes from trixie's deb-src.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -f "$ROOT/third_party/catch2/catch_amalgamated.hpp" ]; then exit 0; fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir -p "$T/lists/partial" "$T/parts" "$T/cache/archives/partial" "$T/src"
URI=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$URI" ] || URI=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$URI" ] || { echo "fetch-third-party: no Debian mirror configured in /etc/apt" >&2; exit 1; }
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $URI trixie main" > "$T/sources.list"
O="-o Dir::Etc::SourceList=$T/sources.list -o Dir::Etc::SourceParts=$T/parts -o Dir::State::Lists=$T/lists -o Dir::Cache=$T/cache -o APT::Sandbox::User=root"
# shellcheck disable=SC2086
apt-get $O update -qq
# shellcheck disable=SC2086
(cd "$T/src" && apt-get $O source -qq catch2 >/dev/null)
C=$(ls -d "$T"/src/catch2-*/ | head -1)
mkdir -p "$ROOT/third_party/catch2"
(cd "$C/extras" && cp catch_amalgamated.hpp catch_amalgamated.cpp Catch.cmake CatchAddTests.cmake "$ROOT/third_party/catch2/")
cp "$C/LICENSE.txt" "$ROOT/third_party/catch2/"
echo "third_party/catch2: $(basename "$C")"
