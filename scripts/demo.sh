#!/bin/sh
# README command 1: set up, build (native-release) and run the demo.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
cmake --preset native-release >/dev/null
cmake --build --preset native-release --target eddy_demo
exec build/native-release/examples/demo/eddy_demo
