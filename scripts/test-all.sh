#!/bin/sh
# README command 2 (and CI): set up, then build and run every test on both targets:
# native ASan+UBSan (whole suite, install-and-consume, demo, Python conformance), native TSan
# (the cross-thread tests), WebAssembly under Node and in Chromium, and WebAssembly with threads
# (the suite again, and Web Workers in a page). Builds run one after another (2 cores).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export NODE_PATH=/usr/share/nodejs
scripts/setup.sh
status=0
for preset in native-asan native-tsan wasm-release wasm-threads; do
  echo "==== $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  ctest --preset "$preset" -j2 || status=1
done
exit $status
