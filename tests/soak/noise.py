"""Scaling noise between consecutive diagnoses of an unchanged install (issue 6).

Reads reports/soak/run-*.json (tests/soak/baseline_chain.sh) and prints, for every probe x mode
with a speedup, the relative drop between consecutive runs: the 95th percentile of drops is the
noise threshold toolkit.compare.SCALING_NOISE should exceed.
"""

import glob
import json
import statistics
import sys

runs = [json.load(open(p)) for p in sorted(glob.glob(sys.argv[1] if len(sys.argv) > 1 else "reports/soak/run-*.json"))]
drops = []
flips = []
for a, b in zip(runs, runs[1:]):
    before = {(r["probe"], r["mode"], r["workers"]): r for r in a["results"] if r.get("remedy") is None}
    for r in b["results"]:
        key = (r["probe"], r["mode"], r["workers"])
        old = before.get(key)
        if old is None:
            continue
        if old["verdict"] != r["verdict"]:
            flips.append((key, old["verdict"], r["verdict"]))
        if old.get("speedup") and r.get("speedup"):
            drops.append(max(0.0, 1 - r["speedup"] / old["speedup"]))
drops.sort()
pct = lambda q: drops[min(len(drops) - 1, int(q * len(drops)))] if drops else None
print(f"{len(runs)} runs, {len(drops)} consecutive speedup pairs")
print(f"relative drop: median {statistics.median(drops):.3f}, p90 {pct(0.90):.3f}, p95 {pct(0.95):.3f}, "
      f"p99 {pct(0.99):.3f}, max {drops[-1]:.3f}")
print(f"{len(flips)} verdict changes between consecutive runs:")
for key, old, new in flips:
    print(f"  {key}: {old} -> {new}")
