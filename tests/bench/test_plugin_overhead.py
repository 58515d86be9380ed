"""Benchmark (make bench): the pytest plugin's cost on a suite that does not use it.

Iris's own PP unit tests run with the plugin loaded (as installing threadprobe makes it) and
with it disabled (-p no:threadprobe), alternately, 5 times each; medians compared.
Figure to reach: under 5% overhead.
"""

import json
import os
import statistics
import subprocess
import sys
import time

import pytest

from tests.conftest import TEST_DATA
from threadprobe.report import benchfile
from threadprobe.records import BENCH_SCHEMA

pytestmark = pytest.mark.bench
REPEATS = 5


def run_suite(*extra):
    env = {**os.environ, "OVERRIDE_TEST_DATA_REPOSITORY": str(TEST_DATA)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "iris.tests.unit.fileformats.pp", "-q",
                           "-p", "no:cacheprovider", "-p", "no:xdist", *extra], capture_output=True, text=True,
                          env=env, timeout=900)
    elapsed = time.perf_counter() - started
    assert done.returncode in (0, 1), done.stdout[-2000:]
    return elapsed, done.stdout.strip().splitlines()[-1]


def test_plugin_overhead_on_a_suite_that_does_not_use_it(tmp_path):
    with_plugin, without = [], []
    for _ in range(REPEATS):
        seconds, summary = run_suite()
        with_plugin.append(seconds)
        without.append(run_suite("-p", "no:threadprobe")[0])
    overhead = statistics.median(with_plugin) / statistics.median(without) - 1
    out = {"schema": BENCH_SCHEMA, "benchmark": "pytest_plugin_overhead", "suite": "iris.tests.unit.fileformats.pp",
           "last_summary": summary, "seconds_with_plugin": with_plugin, "seconds_without": without,
           "overhead": round(overhead, 4)}
    os.makedirs("reports", exist_ok=True)
    benchfile.write("reports/bench-plugin-overhead.json", out)
    print(json.dumps(out, indent=1))
    assert overhead < 0.05
