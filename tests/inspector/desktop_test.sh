#!/bin/sh
# The desktop inspector under a real X server (Xvfb): the in-process demo workload for a few
# seconds with the Transports view open, a screenshot, and the numbers the views showed checked
# from the app's summary; then a recording made while running is replayed into a second run, and
# a third run is switched to another view with a real click.
# usage: desktop_test.sh EDDY_INSPECTOR OUT_DIR
set -eu
APP=$1
OUT=$2
mkdir -p "$OUT"
export ASAN_OPTIONS=detect_leaks=0  # Mesa and SDL keep allocations until exit; the model is leak-checked in eddy_tests
rm -f "$OUT/desktop.json" "$OUT/overview.json" "$OUT/overview.png" "$OUT/clicked.json" "$OUT/tasks.png" "$OUT/desktop.png" "$OUT/recording.jsonl" "$OUT/replay.json" "$OUT/trace.json"
xvfb-run -a -s "-screen 0 1280x720x24" sh -c "'$APP' --tab transports --seconds 5 --summary '$OUT/desktop.json' \
  --record '$OUT/recording.jsonl' --export '$OUT/trace.json' & A=\$!; sleep 4; import -window root '$OUT/desktop.png'; wait \$A"
xvfb-run -a -s "-screen 0 1280x720x24" "$APP" --open "$OUT/recording.jsonl" --frames 30 --summary "$OUT/replay.json"
# The Overview's two columns of plots and the handles table, each inside the window. (The phase
# plots and the table were once drawn past its right edge, out of sight.)
xvfb-run -a -s "-screen 0 1280x720x24" sh -c "'$APP' --tab overview --seconds 3 --summary '$OUT/overview.json' & A=\$!; sleep 2.5; import -window root '$OUT/overview.png'; wait \$A"
# A view asked for with --tab is only the first one: a click on the Tasks tab (where the first
# run drew it) must switch to it. (It once stayed on Transports whatever the user clicked.)
TASKS_AT=$(/usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['shown']['tab_rects']['tasks']; print(int((r[0]+r[2])/2), int((r[1]+r[3])/2))" "$OUT/desktop.json")
set -- $TASKS_AT
xvfb-run -a -s "-screen 0 1280x720x24" sh -c "'$APP' --tab transports --seconds 5 --summary '$OUT/clicked.json' & A=\$!;
  sleep 3; xdotool mousemove $1 $2; sleep 0.2; xdotool mousemove_relative 2 0; sleep 0.3; xdotool click 1;
  sleep 0.5; import -window root '$OUT/tasks.png'; wait \$A"
# The command line: --help is usage on stdout and success; an unknown view is refused with the list.
"$APP" --help > "$OUT/help.txt" 2>&1; echo "exit $?" >> "$OUT/help.txt"
"$APP" --tab nope > "$OUT/badtab.txt" 2>&1 || echo "exit $?" >> "$OUT/badtab.txt"
# No display: the demo is served to the browser inspector instead, and the URL printed.
env -u DISPLAY -u WAYLAND_DISPLAY "$APP" --seconds 2 > "$OUT/headless.txt" 2>&1
/usr/bin/python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
d = json.load(open(os.path.join(out, "desktop.json")))
r = json.load(open(os.path.join(out, "replay.json")))
t = json.load(open(os.path.join(out, "trace.json")))
fails = []
def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f": {detail}"))
    if not ok: fails.append(what)
check("live updates reached the views", d["updates"] >= 20, d["updates"])
check("no protocol error", d["error"] == "", d["error"])
check("the ready-queue depth shows the demo's bursts", d["ready_depth_max"] >= 200, d["ready_depth_max"])
check("a transport went above its high water mark", any(x["above_high"] for x in d["transports"]), d["transports"])
check("the view asked for with --tab opened first", d["shown"].get("tab") == "transports", d["shown"])
check("pause_writing markers drawn on the transport timeline", d["shown"]["pause_writing_markers"] >= 1, d["shown"])
check("resume_writing markers drawn too", d["shown"].get("resume_writing_markers", 0) >= 1, d["shown"])
o = json.load(open(os.path.join(out, "overview.json")))["shown"]
panels, (wx0, wy0, wx1, wy1) = o["panel_rects"], o["window_rect"]
left, right = ("depth", "ips", "lag"), ("poll", "timers", "ready", "live_handles")
check("the Overview drew its plots and the live-handles table", set(left + right) <= set(panels), panels)
inside = all(wx0 <= r[0] and r[2] <= wx1 and wy0 <= r[1] and r[3] <= wy1 and r[2] - r[0] >= 200
             for r in panels.values())
check("every Overview panel lies inside the window", inside, (panels, o["window_rect"]))
check("the Overview's two columns do not overlap",
      max(panels[k][2] for k in left if k in panels) <= min(panels[k][0] for k in right if k in panels), panels)
c = json.load(open(os.path.join(out, "clicked.json")))
check("a click on the Tasks tab leaves the view --tab chose", c["shown"].get("tab") == "tasks", c["shown"])
check("the views showed tasks and transports", d["shown"]["tasks"] >= 5 and d["shown"]["transports"] >= 3, d["shown"])
check("the recording replays: frames and the same transports", r["frames"] >= 10 and len(r["transports"]) >= 3, r)
check("the replayed history shows the pauses too", any(x["pause_writing"] > 0 for x in r["transports"]), r["transports"])
check("the screenshot exists", os.path.getsize(os.path.join(out, "desktop.png")) > 10000)
headless = open(os.path.join(out, "headless.txt")).read()
check("without a display it serves the browser inspector and prints the URL",
      "serving the browser inspector instead" in headless and "http://127.0.0.1:" in headless and "#token=" in headless, headless)
help_text = open(os.path.join(out, "help.txt")).read()
check("--help prints the usage and succeeds", help_text.startswith("usage: eddy-inspector") and help_text.rstrip().endswith("exit 0"), help_text)
bad = open(os.path.join(out, "badtab.txt")).read()
check("an unknown --tab is refused with the views' names",
      "unknown tab 'nope'" in bad and "transports" in bad and bad.rstrip().endswith("exit 2"), bad)
phases = {e.get("ph") for e in t["traceEvents"]}
check("the Perfetto export has slices, flows, counters and instants", {"X", "s", "f", "C", "i"} <= phases, phases)
sys.exit(1 if fails else 0)
PY
