#!/bin/sh
# What the inspector costs, in the shared harness's echo cells, one run, side by side:
#   eddy-*-hooks-out   built with -DEDDY_INSPECTOR=OFF (the baseline)
#   eddy-*             hooks compiled in, inspection off (the default build)
#   eddy-*-watched     the agent serving and a client decoding every update
# and prints each mode's paired ratio to compiled out (bench/paired_ratios.py).
# usage: bench/inspector_cost.sh [extra run.sh args, e.g. --reps 8]   (OUT=report.md to keep it)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cmake --preset native-release >/dev/null
cmake --build --preset native-release --target echo_server
cmake -S . -B build/native-release-noinspect -G Ninja -DCMAKE_BUILD_TYPE=Release -DEDDY_INSPECTOR=OFF \
  -DEDDY_BUILD_TESTS=OFF -DEDDY_BUILD_EXAMPLES=OFF -DEDDY_BUILD_INSPECTOR_APP=OFF >/dev/null
cmake --build build/native-release-noinspect --target echo_server
H=${BENCH_HARNESS:-$ROOT/../shared/bench}
export EDDY_BUILD="$ROOT/build/native-release" EDDY_BUILD_NOINSPECT="$ROOT/build/native-release-noinspect"
OUT=${OUT:-$(mktemp -d)/inspector-cost.md}
"$H/run.sh" --impls "$ROOT/bench/eddy.toml" --skip-micro --out "$OUT" \
  --only eddy-protocol,eddy-protocol-hooks-out,eddy-protocol-watched,eddy-streams,eddy-streams-hooks-out,eddy-streams-watched "$@"
python3 "$ROOT/bench/paired_ratios.py" "${OUT%.md}.json" \
  eddy-protocol/eddy-protocol-hooks-out eddy-protocol-watched/eddy-protocol-hooks-out \
  eddy-streams/eddy-streams-hooks-out eddy-streams-watched/eddy-streams-hooks-out
