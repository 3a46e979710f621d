#!/bin/sh
# Builds the browser demo (WebAssembly) and serves it on http://127.0.0.1:8765/ (Ctrl-C stops).
# The page runs an Eddy loop driven by the browser's event loop: an echo server and clients on
# the loop's virtual network, with live latency, bandwidth and water marks.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export NODE_PATH=/usr/share/nodejs
scripts/setup.sh
cmake --preset wasm-release >/dev/null
cmake --build --preset wasm-release --target eddy_web_demo eddy_inspector_web
PORT=${PORT:-8765}
echo "serving build/wasm-release/web on http://127.0.0.1:$PORT/"
exec /usr/bin/python3 -m http.server "$PORT" --bind 127.0.0.1 -d build/wasm-release/web
