#!/bin/sh
# Builds the inspector decoder's libFuzzer target with clang (ASan + UBSan + libFuzzer) and runs
# it for SECONDS from a seed corpus of real protocol lines. usage: run.sh BUILD_DIR [SECONDS]
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$1
SECONDS_TO_RUN=${2:-20}
mkdir -p "$OUT/corpus"
BIN="$OUT/inspect_fuzz"
SOURCES="$ROOT/tests/fuzz/inspect_fuzz.cpp $ROOT/inspector/model.cpp $ROOT/core/src/inspect_wire.cpp"
newest=$(ls -t $SOURCES "$ROOT"/core/include/eddy/*.hpp "$ROOT"/inspector/model.hpp | head -1)
if [ ! -x "$BIN" ] || [ "$newest" -nt "$BIN" ]; then
  # shellcheck disable=SC2086
  clang++ -std=c++20 -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -DEDDY_INSPECT=1 -I"$ROOT/core/include" -I"$ROOT/inspector" $SOURCES -o "$BIN" -lpthread
fi
# Seeds: a welcome, an update with every section, a hello, and broken variants.
printf '%s\n' '{"type":"hello","protocol":1,"token":"abc"}' > "$OUT/corpus/hello"
printf '%s\n' '{"type":"update","seq":1,"time":1.5,"full":true,"metrics":{"iterations":3,"live":[1,2,3]},"ready":[{"name":"cb","file":"a.cpp","line":3}],"timers":[{"name":"t","when":2,"cancelled":true}],"tasks":{"upsert":[{"id":1,"name":"x","state":"pending","await":[{"function":"f","awaiting":"coroutine","file":"a","line":1}]}],"removed":[2]},"transports":{"upsert":[{"id":7,"high":65536,"low":16384,"buffer":70000}],"removed":[]},"servers":[{"id":1,"address":"127.0.0.1:1"}],"exceptions":[{"message":"m","slow":true}],"passes":[[1,0.1,0.1,0.1,5]],"strings":[[1,"cb"],[2,"a.cpp"]],"events":[[1,1,99,0.001,1,2,3],[1.1,0,99,0,0,2,3],[1.2,11,7,70000,0,0,0]]}' > "$OUT/corpus/update"
printf '%s' '{"type":"update","metrics":{},"events":[[1e309,99,-1,0,4294967296,0,0]]}' > "$OUT/corpus/broken"
# Numbers no cast may take (found by this fuzzer): out of range for the integer and float fields.
printf '%s\n' '{"type":"update","events":[[1,11,-7,-1e300,6.7e35,-1,1e19]],"passes":[[1,1e300,-1e300,0,-5]],"metrics":{"live":[-1,1e300]},"tasks":{"upsert":[],"removed":[-3,1e300]}}' > "$OUT/corpus/out-of-range"
ASAN_OPTIONS=detect_leaks=1 "$BIN" -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -timeout=10 -print_final_stats=1 "$OUT/corpus"
