#!/bin/sh
# What the inspector costs the loop's own thread, in instructions per echoed request, a measure
# the shared VM's noise does not blur the way it blurs req/s (this VM exposes no hardware
# counters, so callgrind counts). The echo server runs under callgrind (one count per thread), its
# counters zeroed once it serves; the harness's load generator drives one cell, then the server
# exits and callgrind writes the counts. The loop thread's count (user space only; its shutdown
# included, a few thousand instructions) is divided by the requests echoed. What the agent's and
# a watching client's threads take is measured at full speed by bench/inspector_threads.sh:
# under callgrind the server runs ~10-50x slower while snapshots stay 10 per second of wall time,
# so per-tick work weighs 10-50x more per request here than at full speed, and the watched
# column is an upper bound for the loop thread.
#   hooks-out   build/native-release-noinspect (-DEDDY_INSPECTOR=OFF), the baseline
#   off         build/native-release, hooks compiled in, inspection off
#   watched     build/native-release with --inspect watched (agent + a client decoding updates)
# usage: bench/inspector_instructions.sh [seconds per cell]   (after bench/inspector_cost.sh has
#        made both builds; BENCH_HARNESS as for inspector_cost.sh)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
H=${BENCH_HARNESS:-$ROOT/../shared/bench}
LOAD=${ECHOLOAD:-$H/build/echoload}
SECS=${1:-5}
DIR=$(mktemp -d /tmp/eddy-icost-XXXXXX)
printf '| api | cell | hooks-out, loop thread instr/request | hooks-out ÷ off | hooks-out ÷ watched |\n'
printf '|---|---|---:|---:|---:|\n'
for api in protocol streams; do
  for cell in "1k 10" "10k 10" "100k 10" "1k 100"; do
    set -- $cell
    line="| $api | $1×$2 (unix)"
    base=""
    for variant in hooks-out off watched; do
      build=$ROOT/build/native-release extra=""
      [ $variant = hooks-out ] && build=$ROOT/build/native-release-noinspect
      [ $variant = watched ] && extra="--inspect watched"
      rm -f "$DIR/sock" "$DIR"/cg.*
      valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$DIR/cg.%p" \
        "$build/bench/echo_server" --api $api $extra "unix:$DIR/sock" >/dev/null 2>&1 &
      pid=$!
      while [ ! -S "$DIR/sock" ]; do sleep 0.2; done
      sleep 1
      callgrind_control -z $pid >/dev/null 2>&1
      req=$("$LOAD" --unix "$DIR/sock" -c "$2" -s "$1" -d "$SECS" -w 0 --json 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
      { kill -TERM $pid; wait $pid; } 2>/dev/null || true
      ins=$(awk '/^summary:/ {print $2}' "$DIR/cg.$pid-01")
      per=$(python3 -c "print(f'{$ins / $req:.0f}')")
      if [ -z "$base" ]; then
        base=$per
        line="$line | $per"
      else
        line="$line | $(python3 -c "print(f'{$base / $per:.3f}')")"
      fi
    done
    echo "$line |"
  done
done
rm -rf "$DIR"
