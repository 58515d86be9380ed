"""The wind workload: right physics, one compute, atomic output, one-line errors."""

import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import dask
import iris
import numpy as np
import pytest
from dask.callbacks import Callback

from toolkit.errors import UsageError
from toolkit.runner import wind
from toolkit.runner.schedulers import Choice


def reference_circular_variance(degrees):
    c = sum(math.cos(math.radians(d)) for d in degrees) / len(degrees)
    s = sum(math.sin(math.radians(d)) for d in degrees) / len(degrees)
    return 1 - math.hypot(c, s)


def test_direction_is_where_the_wind_comes_from_clockwise_from_north():
    u = dask.array.from_array(np.array([1.0, 0.0, -1.0, 0.0]))
    v = dask.array.from_array(np.array([0.0, 1.0, 0.0, -1.0]))
    speed, direction = wind.speed_and_direction(u, v)
    assert np.allclose(speed.compute(), 1.0)
    assert np.allclose(direction.compute(), [270.0, 180.0, 90.0, 0.0])  # westerly, southerly, easterly, northerly


def test_circular_variance_is_small_across_north_where_a_plain_variance_is_huge():
    degrees = [359.0, 1.0, 358.0, 2.0]
    got = float(wind.circular_variance(dask.array.from_array(np.array(degrees))).compute())
    assert math.isclose(got, reference_circular_variance(degrees), rel_tol=1e-9) and got < 0.001
    assert np.var(degrees) > 30000


def load_result(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {c.var_name: c for c in iris.load(str(path))}


class CountComputes(Callback):
    def __init__(self):
        super().__init__()
        self.sizes = []

    @property
    def graphs(self):
        return len(self.sizes)

    def _start(self, dsk):
        self.sizes.append(len(dsk))


def test_results_are_right_and_computed_once(wind_nc, tmp_path):
    counter = CountComputes()
    with counter:
        graph = wind.build(str(wind_nc / "x_wind_*.nc"), str(wind_nc / "y_wind_*.nc"))
        assert counter.graphs == 0, "something was computed before the final compute"
        assert graph.speed_variance.has_lazy_data() and graph.direction_circular_variance.has_lazy_data()
    out = tmp_path / "out.nc"
    with counter:
        wind.run(str(wind_nc / "x_wind_*.nc"), str(wind_nc / "y_wind_*.nc"), out, Choice("synchronous"), quiet=True)
    # One computation of both results; after it, Iris's saver runs a 1-task bookkeeping graph.
    assert counter.sizes[0] > 10 and all(n <= 2 for n in counter.sizes[1:]), counter.sizes
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
    wind.run(x, y, tmp_path / "sync.nc", Choice("synchronous"), quiet=True)
    ref = load_result(tmp_path / "sync.nc")
    for choice in (Choice("threads", 1, 2), Choice("processes", 2, 1)):
        wind.run(x, y, tmp_path / f"{choice.scheduler}.nc", choice, quiet=True)
        got = load_result(tmp_path / f"{choice.scheduler}.nc")
        for name, cube in ref.items():
            assert np.array_equal(cube.data, got[name].data), (choice, name)


def test_the_two_globs_may_match_the_same_files(wind_nc, tmp_path):
    both = str(wind_nc / "*_wind_*.nc")
    wind.run(both, both, tmp_path / "out.nc", Choice("synchronous"), quiet=True)
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
        from toolkit.runner.data import DataSpec, make_data

        make_data(DataSpec(tmp_path, files=1, size_mb=0.2, fmt="nc", ny=44, nx=60), quiet=True)
        y = str(tmp_path / "y_wind_000.nc")
    elif case == "truncated":
        data = (wind_nc / "x_wind_000.nc").read_bytes()
        bad.write_bytes(data[: len(data) // 2])
        x = str(bad)
    else:
        bad.write_bytes(b"")
        x = str(bad)
    with pytest.raises(UsageError) as err:
        wind.build(x, y)
    text = str(err.value)
    assert message in text and "\n" not in text
    if case in ("grid", "truncated", "empty"):
        assert str(tmp_path) in text


def test_a_killed_run_leaves_no_output(wind_nc, tmp_path):
    out = tmp_path / "killed.nc"
    code = ("import sys, time; from toolkit.runner import wind; from toolkit.runner.schedulers import Choice\n"
            "orig = wind.save_atomic\n"
            "def slow(cubes, out):\n"
            "    import iris\n"
            "    tmp = out.with_name('.' + out.name + '.partial')\n"
            "    print('saving', flush=True); time.sleep(30)\n"
            "wind.save_atomic = lambda c, o: (print('saving', flush=True), time.sleep(30), orig(c, o))\n"
            f"wind.run({str(wind_nc / 'x_wind_*.nc')!r}, {str(wind_nc / 'y_wind_*.nc')!r}, "
            f"__import__('pathlib').Path({str(out)!r}), Choice('synchronous'), quiet=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "saving"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


@pytest.mark.slow
def test_distributed_survives_a_worker_killed_mid_run(wind_nc, tmp_path, no_orphans):
    import psutil

    x, y = str(wind_nc / "x_wind_*.nc"), str(wind_nc / "y_wind_*.nc")
    wind.run(x, y, tmp_path / "sync.nc", Choice("synchronous"), quiet=True)
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

    slow = wind.speed_and_direction

    def slowed(u, v):  # each chunk takes a moment, so the kill lands while work is in flight
        s, d = slow(u, v)
        return s.map_blocks(_sleepy, dtype=s.dtype), d

    import toolkit.runner.wind as module

    module.speed_and_direction = slowed
    try:
        wind.run(x, y, tmp_path / "dist.nc", Choice("distributed", 2, 1), quiet=True,
                 on_client=kill_one_worker_once_work_starts)
    finally:
        module.speed_and_direction = slow
    assert killed, "no worker was killed"
    ref, got = load_result(tmp_path / "sync.nc"), load_result(tmp_path / "dist.nc")
    for name in ref:
        assert np.array_equal(ref[name].data, got[name].data)


def _sleepy(block):
    time.sleep(0.3)
    return block


def test_a_stale_temporary_is_not_the_output(wind_nc, tmp_path):
    out = tmp_path / "o.nc"
    wind.run(str(wind_nc / "x_wind_*.nc"), str(wind_nc / "y_wind_*.nc"), out, Choice("synchronous"), quiet=True)
    assert out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    shutil.rmtree(tmp_path)
