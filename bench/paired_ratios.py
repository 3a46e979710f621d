#!/usr/bin/env python3
"""Paired ratios from one harness run: for each echo cell (req/s) and each micro test (ns/op),
the median over rounds of A / B with both measured in the same round, plus the lowest and
highest round. The harness reports ratios to its reference row (libuv-c); this compares any two
rows, e.g. an inspector mode against the build with the hooks compiled out (docs/inspector.md),
or eddy-wasm against eddy (docs/targets.md).

  bench/paired_ratios.py RESULTS.json eddy-streams-watched/eddy-streams-hooks-out [A/B ...]

RESULTS.json is the file run.py writes next to its --out report."""
import collections
import json
import statistics
import sys


def cell_name(mode, transport, size, conns):
    prefix = "stream " if mode != "rr" else ("unix " if transport == "unix" else "")
    return f"{prefix}{size // 1024}K×{conns}"


def main(argv):
    if len(argv) < 3 or any("/" not in p for p in argv[2:]):
        sys.exit(__doc__)
    with open(argv[1]) as f:
        results = json.load(f)
    rounds = collections.defaultdict(dict)  # (cell, round) -> impl -> req/s
    for r in results.get("echo", []):
        cell = (r["mode"], r["transport"], r["size"], r["conns"])
        rounds[(cell, r["round"])][r["impl"]] = r["rps"]
    cells = sorted({cell for cell, _ in rounds},
                   key=lambda c: (c[0] != "rr", c[1] != "tcp", c[2], c[3]))
    if cells:
        table(rounds, cells, [cell_name(*c) for c in cells], argv[2:])
    micro = collections.defaultdict(dict)  # (test, round) -> impl -> ns/op
    for r in results.get("micro", []):
        if r.get("ns_per_op"):
            micro[(r["test"], r["round"])][r["impl"]] = r["ns_per_op"]
    tests = list(dict.fromkeys(t for t, _ in micro))  # the harness's order
    if tests:
        if cells:
            print()
        print("ns/op:")
        table(micro, tests, tests, argv[2:])


def table(rounds, cells, names, pairs):
    print("| A / B | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(cells))
    for pair in pairs:
        a, b = pair.split("/", 1)
        row = []
        for cell in cells:
            ratios = [v[a] / v[b] for (c, _), v in rounds.items()
                      if c == cell and a in v and b in v and v[b] > 0]
            row.append(f"{statistics.median(ratios):.3f} ({min(ratios):.2f}–{max(ratios):.2f})"
                       if ratios else "–")
        print(f"| {a} / {b} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv)
