"""A run's progress lines and its peak memory (threadprobe.scheduling.runs.display)."""

from __future__ import annotations

import io
import subprocess
import sys
import time

from threadprobe.scheduling.runs.display import PeakMemory, RunProgress


def test_a_log_gets_a_line_at_start_and_at_most_one_per_interval():
    out = io.StringIO()
    progress = RunProgress(out, every=3600)
    progress.start("compute", 4)
    for k in range(4):
        progress.done(f"threadprobe-{k}")
    progress.done("dask-helper")  # dask's own tasks are not the run's
    assert progress.count == 4
    assert out.getvalue().splitlines() == ["[threadprobe] compute: 4 tasks"]
    progress.every = 0.0
    progress.done("threadprobe-5")
    assert out.getvalue().splitlines()[-1].startswith("[threadprobe] compute: 5/4 tasks")


def test_quiet_writes_nothing():
    out = io.StringIO()
    progress = RunProgress(out, quiet=True)
    progress.start("compute", 2)
    progress.done("threadprobe-0")
    progress.note("hello")
    assert out.getvalue() == ""


def test_peak_memory_counts_a_child_process_too():
    grow = "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    with PeakMemory(interval=0.05) as alone:
        time.sleep(0.3)
    with PeakMemory(interval=0.05) as with_child:
        subprocess.run([sys.executable, "-c", grow], check=True)
    assert alone.peak and with_child.peak
    assert with_child.peak - alone.peak > 250 * 2**20  # the child's 300 MiB, touched, counted
