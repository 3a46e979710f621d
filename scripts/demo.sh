#!/bin/sh
# README command 1: set up, build (native-release) and run the demo: the inspector watching the
# built-in demo workload. Without a display it serves the browser inspector (built here too) and
# prints the URL. Extra arguments go to eddy-inspector (e.g. --attach HOST:PORT --token T).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
cmake --preset native-release >/dev/null
cmake --build --preset native-release --target eddy-inspector eddy_demo
if [ -z "${DISPLAY:-}" ]; then
  export NODE_PATH=/usr/share/nodejs
  cmake --preset wasm-release >/dev/null
  cmake --build --preset wasm-release --target eddy_inspector_web
fi
exec build/native-release/inspector/eddy-inspector "$@"
