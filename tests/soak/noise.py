"""Replays the baseline gate over a chain of diagnoses of an unchanged install (issue 6).

Reads reports/soak/run-*.json (written by tests/soak/baseline_chain.sh: run k was diagnosed with
run k-1 as its baseline; repetition r is runs 2r-1 and 2r) and prints:

- the gate's exit code for every run, recomputed with the current ``threadprobe.report.compare``, and how
  many repetitions passed both runs (the issue's figure: at least 9 of 10);
- the relative speedup drops between consecutive runs of every probe x mode: their 95th
  percentile is the noise threshold ``threadprobe.report.compare.SCALING_NOISE`` must exceed;
- every verdict that changed between consecutive runs.
"""

import glob
import statistics
import sys

from threadprobe import report
from threadprobe.report.compare import compare

paths = sorted(glob.glob(sys.argv[1] if len(sys.argv) > 1 else "reports/soak/run-*.json"))
runs = [report.read(p) for p in paths]
codes = []
drops = []
flips = []
for k, (a, b) in enumerate(zip(runs, runs[1:]), start=1):
    c = compare(a, b)
    codes.append(1 if c.regressed else 0)
    for x in c.worse:
        print(f"run {k}: REGRESSION {x.where} {x.old} -> {x.new} [{x.detail}]")
    for x in c.unconfirmed:
        flips.append(f"run {k}: {x.where} {x.old} -> {x.new}, not confirmed by the baseline [{x.detail}]")
    for x in c.better + c.changed:
        flips.append(f"run {k}: {x.where} {x.old} -> {x.new}")
    before = {(r.probe, r.mode, r.workers): r for r in a.results if r.remedy is None}
    for r in b.results:
        old = before.get((r.probe, r.mode, r.workers))
        if r.remedy is None and old is not None and old.speed.speedup and r.speed.speedup:
            drops.append(max(0.0, 1 - r.speed.speedup / old.speed.speedup))
reps = [codes[i:i + 2] for i in range(0, len(codes) - 1, 2)]
clean = sum(1 for pair in reps if pair == [0, 0])
print(f"{len(runs)} runs; gate exit codes per run: {' '.join(map(str, codes))}")
print(f"repetitions with both runs exiting 0: {clean} of {len(reps)}")
drops.sort()


def pct(q: float) -> float:
    return drops[min(len(drops) - 1, int(q * len(drops)))]


if drops:
    print(f"{len(drops)} consecutive speedup pairs; relative drop: median {statistics.median(drops):.3f}, "
          f"p90 {pct(0.90):.3f}, p95 {pct(0.95):.3f}, p99 {pct(0.99):.3f}, max {drops[-1]:.3f}")
print(f"{len(flips)} verdict changes between consecutive runs that did not gate:")
for line in flips:
    print("  " + line)
if reps and clean < 0.9 * len(reps):
    sys.exit(f"fewer than 9 in 10 repetitions passed both runs ({clean} of {len(reps)})")
