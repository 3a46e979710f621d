#!/bin/sh
# Installs this build of Eddy into a temporary prefix, then builds examples/consumer against it
# twice: with find_package(Eddy) and with pkg-config. Usage: check.sh BUILD_DIR [CXXFLAGS]
set -eu
BUILD=$1; FLAGS=${2:-}
SRC=$(cd "$(dirname "$0")" && pwd)
PREFIX=$(mktemp -d); trap 'rm -rf "$PREFIX"' EXIT
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
cmake -S "$SRC" -B "$PREFIX/build" -G Ninja -DCMAKE_PREFIX_PATH="$PREFIX" \
      -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_EXE_LINKER_FLAGS="$FLAGS" >/dev/null
cmake --build "$PREFIX/build" >/dev/null
BY_CMAKE=$("$PREFIX/build/consumer")
echo "$BY_CMAKE"
# Warnings are errors here: the installed headers must compile cleanly in users' strict builds.
PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig" c++ -std=c++20 -Wall -Wextra -Werror $FLAGS "$SRC/main.cpp" \
    -o "$PREFIX/consumer-pc" $(PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig" pkg-config --cflags --libs eddy)
BY_PKG_CONFIG=$("$PREFIX/consumer-pc")
echo "$BY_PKG_CONFIG"
# Both ways must compile the headers alike (EDDY_INSPECT among them).
[ "$BY_CMAKE" = "$BY_PKG_CONFIG" ] || { echo "find_package and pkg-config builds differ" >&2; exit 1; }
echo "consumer built with find_package(Eddy) and pkg-config eddy"
