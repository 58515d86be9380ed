"""The wind workload: right physics, units read u and v together, atomic output, one-line errors."""

import math
import os
import signal
import subprocess
import sys
import time
import warnings
from contextlib import ExitStack

import iris
import numpy as np
import pytest

from threadprobe.probes._common import speed_and_direction
from threadprobe.records.errors import UsageError
from threadprobe.records import Choice
from threadprobe.scheduling.runs import wind
from threadprobe.scheduling.schedulers import activated


def explicit(choice):
    def decide(job, stack):
        return choice, stack.enter_context(activated(choice)), None

    return decide


def reference_circular_variance(degrees, axis=0):
    """1 - the length of the mean unit vector of the directions, computed whole."""
    theta = np.radians(degrees)
    return 1.0 - np.hypot(np.cos(theta).mean(axis=axis), np.sin(theta).mean(axis=axis))


class Given:  # a slab whose data is already here
    def __init__(self, a):
        self.a = a

    def read(self):
        return np.ma.asarray(self.a)


def test_direction_is_where_the_wind_comes_from_clockwise_from_north():
    speed, direction = speed_and_direction(np.array([1.0, 0.0, -1.0, 0.0]), np.array([0.0, 1.0, 0.0, -1.0]))
    assert np.allclose(speed, 1.0)
    assert np.allclose(direction, [270.0, 180.0, 90.0, 0.0])  # westerly, southerly, easterly, northerly


def test_circular_variance_is_small_across_north_where_a_plain_variance_is_huge():
    degrees = np.array([359.0, 1.0, 358.0, 2.0])
    u, v = -np.sin(np.radians(degrees)), -np.cos(np.radians(degrees))  # wind from those directions
    _, circ = wind.finish(wind.partial_sums([Given(u[:, None, None])], [Given(v[:, None, None])]))
    got = float(circ[0, 0])
    assert math.isclose(got, reference_circular_variance(degrees), abs_tol=1e-6) and got < 0.001
    assert np.var(degrees) > 30000


def test_partial_sums_combine_to_the_variances_of_the_whole_series():
    rng = np.random.default_rng(0)
    u, v = rng.normal(5, 3, (40, 3, 4)).astype("f4"), rng.normal(-2, 3, (40, 3, 4)).astype("f4")

    parts = [wind.partial_sums([Given(u[a:b])], [Given(v[a:b])]) for a, b in ((0, 7), (7, 30), (30, 40))]
    speed_var, circ = wind.finish(wind.combine(parts))
    speed, direction = speed_and_direction(u.astype("f8"), v.astype("f8"))
    assert np.allclose(speed_var, speed.var(axis=0, ddof=1), rtol=1e-5)
    assert np.allclose(circ, reference_circular_variance(direction), atol=1e-6)


def test_units_never_straddle_a_chunk_and_cover_every_time_step(wind_nc):
    u, v, _ = wind.load_pair(str(wind_nc / "x_wind_*.nc"), str(wind_nc / "y_wind_*.nc"))
    job = wind.WindJob(u, v, unit_bytes=3 * 45 * 60 * 4)
    steps = [t for a, b in job.bounds for t in range(a, b)]
    assert steps == list(range(u.shape[0]))
    edges = np.cumsum(u.core_data().chunks[0])
    assert all(not (a < e < b) for a, b in job.bounds for e in edges)
    assert job.units >= 3


def load_result(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {c.var_name: c for c in iris.load(str(path))}


def test_results_are_right_with_cf_metadata(wind_nc, tmp_path):
    out = tmp_path / "out.nc"
    wind.run(str(wind_nc / "x_wind_*.nc"), str(wind_nc / "y_wind_*.nc"), out, explicit(Choice("wind", "synchronous")))
    got = load_result(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = iris.load(str(wind_nc / "x_wind_*.nc")).concatenate_cube().data
        v = iris.load(str(wind_nc / "y_wind_*.nc")).concatenate_cube().data
    speed = np.sqrt(u.astype("f8") ** 2 + v.astype("f8") ** 2)
    assert np.allclose(got["wind_speed_variance"].data, speed.var(axis=0, ddof=1), rtol=1e-4)
    theta = np.radians((270 - np.degrees(np.arctan2(v, u))) % 360)
    circ = 1 - np.hypot(np.cos(theta).mean(axis=0), np.sin(theta).mean(axis=0))
    assert np.allclose(got["wind_from_direction_circular_variance"].data, circ, atol=1e-5)
    speed_var = got["wind_speed_variance"]
    assert speed_var.standard_name == "wind_speed" and str(speed_var.units) == "m2 s-2"
    assert speed_var.cell_methods[0].method == "variance"
    assert str(got["wind_from_direction_circular_variance"].units) == "1"


def test_every_scheduler_gives_the_synchronous_result(wind_pp, tmp_path):
    x, y = str(wind_pp / "x_wind_*.pp"), str(wind_pp / "y_wind_*.pp")
    wind.run(x, y, tmp_path / "sync.nc", explicit(Choice("wind", "synchronous")))
    ref = load_result(tmp_path / "sync.nc")
    for choice in (Choice("wind", "threads", 1, 2), Choice("wind", "processes", 2, 1, context="fork")):
        wind.run(x, y, tmp_path / f"{choice.scheduler}.nc", explicit(choice))
        got = load_result(tmp_path / f"{choice.scheduler}.nc")
        for name, cube in ref.items():
            assert np.allclose(cube.data, got[name].data, rtol=1e-6, atol=1e-7), (choice, name)


def test_the_two_globs_may_match_the_same_files(wind_nc, tmp_path):
    both = str(wind_nc / "*_wind_*.nc")
    wind.run(both, both, tmp_path / "out.nc", explicit(Choice("wind", "synchronous")))
    assert (tmp_path / "out.nc").exists()


@pytest.mark.parametrize("case, message", [
    ("missing", "no x_wind (standard name)"),
    ("grid", "grids differ"),
    ("truncated", "cannot read"),
    ("empty", "the file is empty"),
])
def test_bad_inputs_are_one_line_errors_naming_the_file(wind_nc, tmp_path, case, message):
    x, y = str(wind_nc / "x_wind_*.nc"), str(wind_nc / "y_wind_*.nc")
    bad = tmp_path / "bad.nc"
    if case == "missing":
        x = str(wind_nc / "y_wind_000.nc")
    elif case == "grid":
        from threadprobe.scheduling.runs.data import DataSpec, make_data

        make_data(DataSpec(tmp_path, files=1, size_mb=0.2, fmt="nc", ny=44, nx=60))
        y = str(tmp_path / "y_wind_000.nc")
    elif case == "truncated":
        data = (wind_nc / "x_wind_000.nc").read_bytes()
        bad.write_bytes(data[: len(data) // 2])
        x = str(bad)
    else:
        bad.write_bytes(b"")
        x = str(bad)
    with pytest.raises(UsageError) as err:
        wind.load_pair(x, y)
    text = str(err.value)
    assert message in text and "\n" not in text
    if case in ("grid", "truncated", "empty"):
        assert str(tmp_path) in text


def test_a_killed_run_leaves_no_output(wind_nc, tmp_path):
    out = tmp_path / "killed.nc"
    code = ("import time; from threadprobe.scheduling.runs import wind\n"
            "from threadprobe.records import Choice\n"
            "from threadprobe.scheduling.schedulers import activated\n"
            "orig = wind.save_atomic\n"
            "wind.save_atomic = lambda c, o: (print('saving', flush=True), time.sleep(30), orig(c, o))\n"
            "decide = lambda job, stack: (Choice('wind', 'synchronous'), "
            "stack.enter_context(activated(Choice('wind', 'synchronous'))), None)\n"
            f"wind.run({str(wind_nc / 'x_wind_*.nc')!r}, {str(wind_nc / 'y_wind_*.nc')!r}, "
            f"__import__('pathlib').Path({str(out)!r}), decide)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "saving"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


@pytest.mark.slow
def test_distributed_survives_a_worker_killed_mid_run(wind_nc, tmp_path, no_orphans, monkeypatch):
    import psutil

    x, y = str(wind_nc / "x_wind_*.nc"), str(wind_nc / "y_wind_*.nc")
    wind.run(x, y, tmp_path / "sync.nc", explicit(Choice("wind", "synchronous")))
    killed = []

    def kill_one_worker_once_work_starts(client):
        import threading

        def killer():
            while not client.processing() or not any(client.processing().values()):
                time.sleep(0.01)
            pid = next(iter(client.run(os.getpid).values()))
            psutil.Process(pid).kill()
            killed.append(pid)

        threading.Thread(target=killer, daemon=True).start()

    slow = wind.partial_sums

    def slowed(u, v):  # each task takes a moment, so the kill lands while work is in flight
        time.sleep(0.3)
        return slow(u, v)

    monkeypatch.setattr(wind.Units, "sums", lambda self: slowed(self.u, self.v))
    wind.run(x, y, tmp_path / "dist.nc", explicit(Choice("wind", "distributed", 2, 1)),
             on_client=kill_one_worker_once_work_starts, unit_bytes=45 * 60 * 4 * 2)
    assert killed, "no worker was killed"
    ref, got = load_result(tmp_path / "sync.nc"), load_result(tmp_path / "dist.nc")
    for name in ref:
        assert np.allclose(ref[name].data, got[name].data, rtol=1e-6)


def test_peak_memory_is_reported(wind_nc, tmp_path):
    result = wind.run(str(wind_nc / "x_wind_*.nc"), str(wind_nc / "y_wind_*.nc"), tmp_path / "o.nc",
                      explicit(Choice("wind", "threads", 1, 2)))
    assert result.peak_memory and result.peak_memory > 50 * 2**20
