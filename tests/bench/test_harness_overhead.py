"""Benchmark (make bench): the harness's overhead against the cost of starting its children.

A diagnosis of one trivial probe (the serial oracle, then 3 trials of threads 2 and of processes 2)
starts 1 + 3 + 3x2 = 10 worker processes. The figure to reach: the diagnosis takes no more than 3x the
time that starting 12 fresh interpreters costs. Both are measured side by side, interleaved, in
one run; medians of 5. The fork server and the spawn start method are both measured, which
answers "which way of making fresh children wins".
"""

import json
import os
import statistics
import subprocess
import sys
import time

import pytest

from tests.conftest import TRIVIAL
from threadprobe.harness import fingerprint
from threadprobe.diagnosis.diagnose import diagnose
from threadprobe.diagnosis.options import Grid, Launch, Options, Output, Planner, Selection
from threadprobe.harness.proc import child_env
from threadprobe.report import benchfile
from threadprobe.records import BENCH_SCHEMA

pytestmark = pytest.mark.bench
REPEATS = 5
CHILDREN = 10


def spawn_children() -> float:
    env = child_env()
    started = time.perf_counter()
    for _ in range(CHILDREN):
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - started


def diagnosis(start: str, tmp) -> float:
    options = Options(selection=Selection(plugins=(str(TRIVIAL),), entry_points=False),
                      grid=Grid(threads=(2,), processes=(2,)),
                      planner=Planner(trials=3, timing_trials=0, budget=1e-3),
                      launch=Launch(start=start),
                      output=Output(workdir=str(tmp)),
                      evidence=None)
    started = time.perf_counter()
    diag = diagnose(options, fingerprint=fingerprint.light)
    elapsed = time.perf_counter() - started
    assert sum(r.trials for r in diag.results) == 7
    return elapsed


def test_harness_overhead_is_at_most_3x_child_start_cost(tmp_path):
    times: dict[str, list[float]] = {"spawn_12_interpreters": [], "diagnose_fork": [], "diagnose_spawn": []}
    for k in range(REPEATS):
        times["spawn_12_interpreters"].append(spawn_children())
        times["diagnose_fork"].append(diagnosis("fork", tmp_path / f"f{k}"))
        times["diagnose_spawn"].append(diagnosis("spawn", tmp_path / f"s{k}"))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = {
        "fork_vs_child_start": med["diagnose_fork"] / med["spawn_12_interpreters"],
        "spawn_vs_child_start": med["diagnose_spawn"] / med["spawn_12_interpreters"],
        "spawn_vs_fork": med["diagnose_spawn"] / med["diagnose_fork"],
    }
    out = {"schema": BENCH_SCHEMA, "benchmark": "harness_overhead", "repeats": REPEATS, "children": CHILDREN,
           "seconds": times, "median_seconds": med, "ratios": ratios, "cores": os.cpu_count()}
    os.makedirs("reports", exist_ok=True)
    benchfile.write("reports/bench-harness.json", out)
    print(json.dumps({"median_seconds": med, "ratios": ratios}, indent=1))
    assert ratios["fork_vs_child_start"] <= 3.0
