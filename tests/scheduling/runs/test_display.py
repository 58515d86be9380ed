"""A run's progress lines and its peak memory (threadprobe.scheduling.runs.display)."""

from __future__ import annotations

import io
import subprocess
import sys
import time

from threadprobe.diagnosis.progress import LineProgress, make_progress, phase
from threadprobe.scheduling.runs.display import PeakMemory, Tasks


def test_only_the_runs_own_tasks_count_and_each_update_says_of_how_many():
    out = io.StringIO()
    progress = LineProgress(out, every=3600)
    with phase(progress, "wind"):
        tasks = Tasks(progress, "compute", 4)
        for k in range(4):
            tasks.done(f"threadprobe-{k}")
        tasks.done("dask-helper")  # dask's own tasks are not the run's
        progress.every = 0.0
        tasks.done("threadprobe-4")
    assert tasks.count == 5
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[threadprobe] wind: compute; 0/4 tasks in the run")  # then none within the interval
    assert lines[1].startswith("[threadprobe] wind: compute; 5/4 tasks in the run") and "wind done in" in lines[2]
    assert len(lines) == 3


def test_quiet_writes_nothing():
    out = io.StringIO()
    progress = make_progress(quiet=True, stream=out)
    with phase(progress, "wind"):
        Tasks(progress, "compute", 2).done("threadprobe-0")
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
