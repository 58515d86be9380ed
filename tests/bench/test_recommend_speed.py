"""Benchmark (make bench): `threadprobe recommend` answers in under 1 s from a matching diagnosis."""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from threadprobe.report import benchfile
from threadprobe.records import BENCH_SCHEMA

pytestmark = pytest.mark.bench


def test_recommend_from_a_matching_diagnosis_is_under_a_second():
    report = Path("reports/diagnosis.json")
    if not report.exists():
        pytest.skip("run make diagnose first")
    times = []
    for _ in range(5):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "threadprobe.cli", "recommend", "--workload", "wind"],
                              capture_output=True, text=True, timeout=300)
        times.append(time.perf_counter() - started)
        assert done.returncode == 0 and json.loads(done.stdout)["source"] == f"diagnosis {report}", done.stderr
    out = {"schema": BENCH_SCHEMA, "benchmark": "recommend_answer_time", "seconds": times,
           "median": statistics.median(times)}
    os.makedirs("reports", exist_ok=True)
    benchfile.write("reports/bench-recommend.json", out)
    print(json.dumps(out))
    assert statistics.median(times) < 1.0
