#!/bin/sh
# What watching a loop costs its process at full speed, thread by thread: the echo server runs
# with the agent serving and an in-process client decoding every update (`--inspect watched`),
# pinned to one CPU with all its threads as the harness pins it, the harness's load generator on
# the other CPU. After the load has run 2 s (past the first window's burst), each thread's CPU
# time is read from /proc/PID/task/TID/schedstat over about 4 s and shown as a share of those
# 4 s of the core (the loop thread's ~100% says the core was saturated; sleep's timing makes it
# wander by a percent). The agent's thread is "eddy-inspector", the client's "inspector-cli":
# what they take, the loop's thread loses, on top of its own recording (which
# bench/inspector_instructions.sh counts). Needs build/native-release (bench/inspector_cost.sh
# builds it).
# usage: bench/inspector_threads.sh   (BENCH_HARNESS / ECHOLOAD as for inspector_instructions.sh)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
H=${BENCH_HARNESS:-$ROOT/../shared/bench}
LOAD=${ECHOLOAD:-$H/build/echoload}
DIR=$(mktemp -d /tmp/eddy-ithreads-XXXXXX)
threads() {
  for t in /proc/$1/task/*; do echo "$(cat "$t/comm") $(cut -d' ' -f1 "$t/schedstat")"; done
}
printf '| api | cell | loop thread | eddy-inspector (agent) | inspector-cli (client) |\n'
printf '|---|---|---:|---:|---:|\n'
for api in protocol streams; do
  for cell in "1k 10" "1k 100" "10k 10" "100k 10"; do
    set -- $cell
    rm -f "$DIR/sock"
    taskset -c 0 "$ROOT/build/native-release/bench/echo_server" --api $api --inspect watched \
      "unix:$DIR/sock" >/dev/null 2>&1 &
    pid=$!
    while [ ! -S "$DIR/sock" ]; do sleep 0.1; done
    taskset -c 1 "$LOAD" --unix "$DIR/sock" -c "$2" -s "$1" -d 7 -w 0 >/dev/null 2>&1 &
    load=$!
    sleep 2
    threads $pid >"$DIR/a"
    sleep 4
    threads $pid >"$DIR/b"
    { wait $load; kill -TERM $pid; wait $pid; } 2>/dev/null || true
    python3 - "$DIR/a" "$DIR/b" "$api" "$1×$2" <<'PY'
import sys
def read(path):
    rows = [line.rsplit(" ", 1) for line in open(path)]
    return [(name, int(ns)) for name, ns in rows]
a, b = read(sys.argv[1]), read(sys.argv[2])
used = [(name, after - before) for (name, before), (_, after) in zip(a, b)]
share = lambda ns: f"{100 * ns / 4e9:.2f}%"  # of the one core, over the 4 s
print(f"| {sys.argv[3]} | {sys.argv[4]} (unix) | {share(used[0][1])} "
      f"| {share(sum(ns for name, ns in used if name == 'eddy-inspector'))} "
      f"| {share(sum(ns for name, ns in used if name == 'inspector-cli'))} |")
PY
  done
done
rm -rf "$DIR"
