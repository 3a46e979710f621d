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
"$PREFIX/build/consumer"
PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig" c++ -std=c++20 $FLAGS "$SRC/main.cpp" -o "$PREFIX/consumer-pc" \
    $(PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig" pkg-config --cflags --libs eddy)
"$PREFIX/consumer-pc"
echo "consumer built with find_package(Eddy) and pkg-config eddy"
