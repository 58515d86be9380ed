"""The runner's bench: which configurations run, in which order, and what the summary says,
with a fake run in place of the subprocess (no data is read, nothing is timed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from threadprobe.scheduling.runs import bench


def fake_run(seconds: dict[str, float], memory: dict[str, int], calls: list[str]):
    def run(spec: bench.Spec, timeout, env) -> bench.Run:
        name = next(n for n, o in bench.CONFIGS if o == spec.request.replace(diagnosis=None))
        calls.append(name)
        got = bench.Run(seconds=seconds[name], digest=[[1.0, 2.0]], choice="threads (2 threads)", source="pilot",
                        pilot_seconds=1.0, pilot_cost=0.5, pilot_table=(), peak_memory=memory[name])
        return bench.Run.from_json(json.loads(json.dumps(got.to_json())))  # as the subprocess's line reads
    return run


SECONDS = {"synchronous": 100.0, "threads": 55.0, "processes": 60.0, "distributed": 130.0, "auto": 58.0,
           "auto cached": 56.0}
MEMORY = {name: (k + 1) * 2**28 for k, name in enumerate(SECONDS)}


@pytest.fixture
def data(tmp_path):
    (tmp_path / "nc").mkdir()
    (tmp_path / "nc" / "x_wind_0.nc").write_bytes(b"x" * 10)
    return tmp_path


def test_study_scale_runs_only_its_configurations_in_rotating_order(monkeypatch, data):
    calls: list[str] = []
    monkeypatch.setattr(bench, "_subprocess", fake_run(SECONDS, MEMORY, calls))
    result = bench.bench("wind", data, ["nc"], repeats=3, configs=bench.STUDY_CONFIGS)
    assert sorted(set(calls)) == sorted(bench.STUDY_CONFIGS) and len(calls) == 3 * len(bench.STUDY_CONFIGS)
    firsts = [calls[k * 4] for k in range(3)]
    assert len(set(firsts)) == 3  # a noisy spell at the start of a repetition hits a different one each time
    res = result.formats["nc"]
    assert set(res.median_seconds) == set(bench.STUDY_CONFIGS)


def test_the_summary_gives_ratios_spread_peak_memory_and_regret(monkeypatch, data):
    calls: list[str] = []
    monkeypatch.setattr(bench, "_subprocess", fake_run(SECONDS, MEMORY, calls))
    result = bench.bench("wind", data, ["nc"], repeats=2)
    res = result.formats["nc"]
    assert res.speedup["threads"] == round(100.0 / 55.0, 3)
    assert res.ratios_to_synchronous["processes"] == (round(100 / 60, 3),) * 2
    assert res.seconds_range["auto"] == (58.0, 58.0)
    assert res.peak_memory_max == MEMORY
    assert res.regrets == (round(58.0 / 55.0, 3),) * 2  # against the fastest explicit: threads
    assert res.correct == {name: True for name in SECONDS}
    assert bench.Result.from_json(json.loads(json.dumps(result.to_json()))) == result  # what the docs read back


def test_a_run_whose_answer_differs_is_not_the_fastest_and_is_flagged(monkeypatch, data):
    calls: list[str] = []
    wrong = fake_run(SECONDS, MEMORY, calls)

    def run(spec, timeout, env):
        got = wrong(spec, timeout, env)
        return got.replace(digest=[[9.0, 9.0]]) if calls[-1] == "threads" else got

    monkeypatch.setattr(bench, "_subprocess", run)
    res = bench.bench("wind", data, ["nc"], repeats=1).formats["nc"]
    assert res.correct["threads"] is False
    assert res.repetitions[0].fastest_explicit == "processes"


def test_the_bench_s_working_folder_goes_with_it(monkeypatch, data):
    """Choice caches and fresh diagnoses live in a folder of the bench's own, removed at its end."""
    calls: list[str] = []
    caches: list[str] = []
    run = fake_run(SECONDS, MEMORY, calls)

    def seen(spec, timeout, env):
        caches.append(env["THREADPROBE_CACHE"])
        return run(spec, timeout, env)

    monkeypatch.setattr(bench, "_subprocess", seen)
    bench.bench("wind", data, ["nc"], repeats=2)
    folders = {Path(c).parent for c in caches}
    assert len(folders) == 1 and not next(iter(folders)).exists()


def test_a_bench_stopped_mid_run_leaves_no_run_behind(tmp_path):
    """The bench's process is killed while a run computes (as `kill` or a closed terminal stops
    it): the run must go with it, not compute on for minutes as an orphan."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "run.pid"
    run = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    bench_side = (f"from threadprobe.scheduling.runs import bench; import os, sys; "
                  f"bench.timed([sys.executable, '-c', {run!r}], 300, dict(os.environ))")
    parent = subprocess.Popen([sys.executable, "-c", bench_side])
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pid_file.read_text())
        parent.send_signal(signal.SIGTERM)
        parent.wait(30)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the run outlived the bench that started it"
    finally:
        parent.kill()
        if pid_file.exists() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that is gone (as tests/harness/test_launch.py asks psutil)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
