"""The bench's subprocess side (threadprobe.scheduling.runs.benchrun): what it compares between schedulers."""

from __future__ import annotations

import netCDF4
import numpy as np

from threadprobe.scheduling.runs import benchrun


def write(path, speed):
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("y", 20)
        ds.createDimension("x", 30)
        ds.createVariable("speed_variance", "f4", ("y", "x"))[:] = speed
        ds.createVariable("y", "f4", ("y",))[:] = np.arange(20)


def test_the_digest_is_the_2d_results_sampled_and_tells_a_change(tmp_path):
    field = np.random.default_rng(0).random((20, 30)).astype("f4")
    write(tmp_path / "a.nc", field)
    changed = field.copy()
    changed.flat[97] += 1  # a sampled point (every 97th)
    write(tmp_path / "b.nc", changed)
    a, b = benchrun.output_digest(tmp_path / "a.nc"), benchrun.output_digest(tmp_path / "b.nc")
    assert len(a) == 1 and len(a[0]) == len(range(0, 600, 97))  # coordinates (1-d) left out
    assert a != b and a == benchrun.output_digest(tmp_path / "a.nc")


def test_a_wind_run_leaves_no_output_behind(wind_nc, tmp_path, monkeypatch):
    from threadprobe.records import RunRequest, Scheduler
    from threadprobe.scheduling.runs.bench import Inputs, Spec

    monkeypatch.setattr(benchrun.tempfile, "tempdir", str(tmp_path))  # where its temporary folder goes
    files = Inputs(str(wind_nc / "x_wind_*.nc"), str(wind_nc / "y_wind_*.nc"), str(wind_nc / "*.nc"))
    run = benchrun.one(Spec("wind", files, RunRequest(scheduler=Scheduler.SYNCHRONOUS)))
    assert run.seconds is not None and run.digest  # it ran, and its output was read
    assert list(tmp_path.iterdir()) == []  # and then removed
