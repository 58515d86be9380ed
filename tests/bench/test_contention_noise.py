"""Benchmark (make bench): contention classes stay right beside a busy neighbour, 20 runs each.

Planted GIL, mutex and free cases, cf-units (GIL) and h5py (library lock); every run is a whole
diagnosis of the probe (threads 2 and 4) while another process keeps a core busy. Writes
reports/bench-contention.json.
"""

import json
import os
import pathlib

import pytest

from tests.harness.instruments.test_contention import (LIBRARY_CASES, PLANTED_CASES, QUICK_CASES, contention_of,
                                                       quick_contention)
from threadprobe.report import benchfile
from threadprobe.records import BENCH_SCHEMA

pytestmark = pytest.mark.bench
RUNS = 20


def test_contention_classes_are_right_in_19_of_20_runs_beside_a_busy_neighbour(planted, tmp_path, busy_neighbour):
    got = {}
    for probe, expected in [*PLANTED_CASES.items(), *LIBRARY_CASES]:  # each alone in its diagnosis
        classes = [sorted(contention_of((probe,), tmp_path / f"{probe}-{k}").get(probe, ())) for k in range(RUNS)]
        got[probe] = {"expected": expected, "right": sum(c == [expected] for c in classes), "classes": classes}
        print(f"{probe}: {expected} in {got[probe]['right']} of {RUNS}", flush=True)
    os.makedirs("reports", exist_ok=True)
    benchfile.write("reports/bench-contention.json",
                    {"schema": BENCH_SCHEMA, "benchmark": "contention_beside_a_busy_neighbour", "runs": RUNS,
                     "results": got})
    assert all(v["right"] >= 19 for v in got.values()), {k: v["right"] for k, v in got.items()}


def test_quick_diagnoses_classify_the_planted_cases_in_19_of_20_beside_a_busy_neighbour(planted, tmp_path,
                                                                                         busy_neighbour):
    runs = [quick_contention(tmp_path / str(k)) for k in range(RUNS)]
    got = {probe: {"expected": expected, "right": sum(r.get(probe) == {expected} for r in runs),
                   "classes": [sorted(r.get(probe, ())) for r in runs]} for probe, expected in QUICK_CASES.items()}
    for probe, v in got.items():
        print(f"quick {probe}: {v['expected']} in {v['right']} of {RUNS}", flush=True)
    benchfile.write("reports/bench-contention-quick.json",
                    {"schema": BENCH_SCHEMA, "benchmark": "quick_contention_beside_a_busy_neighbour", "runs": RUNS,
                     "results": got})
    assert all(v["right"] >= 19 for v in got.values()), {k: v["right"] for k, v in got.items()}
