"""Iris netCDF probes: what they load equals the cube that was saved, whatever the order."""

import warnings

import numpy as np

from threadprobe.probes import iris_netcdf
from threadprobe.probe import digest


def test_load_realise_returns_the_saved_cube(tmp_path):
    probe = iris_netcdf.LoadRealise()
    probe.prepare(tmp_path)
    data, time, lat, units, name, attrs = probe.task(tmp_path, 2)
    cube = iris_netcdf.make_cube(2)
    assert np.array_equal(data, cube.data) and np.array_equal(time, cube.coord("time").points)
    assert (units, name) == ("m s-1", "x_wind") and ("source", cube.attributes["source"]) in attrs


def test_results_depend_on_i_alone(tmp_path):
    probe = iris_netcdf.LoadRealise()
    probe.prepare(tmp_path)
    first = digest(probe.task(tmp_path, 5))
    probe.task(tmp_path, 2)
    assert digest(probe.task(tmp_path, 5)) == first == digest(probe.task(tmp_path, 1))  # 5 % 4 == 1
    assert first != digest(probe.task(tmp_path, 2))


def test_lazy_chunks_are_lazy_until_computed_and_equal_the_data(tmp_path):
    probe = iris_netcdf.LazyChunks()
    probe.prepare(tmp_path)
    lazy = probe.open(tmp_path)
    assert not isinstance(lazy, np.ndarray)
    assert np.array_equal(probe.task(lazy, 3), iris_netcdf.make_cube(0).data[3])


def test_save_reads_back_the_cube(tmp_path):
    probe = iris_netcdf.Save()
    out = probe.open(tmp_path)
    data, standard_name, units, time, time_units = probe.readback(out, 4, probe.task(out, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cube = iris_netcdf.make_cube(4)
    assert np.array_equal(data, cube.data) and standard_name == "x_wind" and units == "m s-1"
    assert time_units.startswith("hours since 1970-01-01")


def test_the_race_pass_reads_the_small_wind_files_and_the_other_trials_the_full_ones(tmp_path, monkeypatch):
    from threadprobe.probe import PURPOSE_ENV

    probe = iris_netcdf.WindChunks()
    probe.prepare(tmp_path)
    monkeypatch.setenv(PURPOSE_ENV, "stress")
    full = probe.open(tmp_path)
    monkeypatch.setenv(PURPOSE_ENV, "races")
    small = probe.open(tmp_path)
    assert full[0].shape == iris_netcdf.WIND_LAYOUT.shape and small[0].shape == iris_netcdf.RACE_WIND_LAYOUT.shape
    speed = probe.task(small, 1)[0]  # the same task, on the small grid: one value per point
    assert speed.shape == iris_netcdf.RACE_WIND_LAYOUT.shape[1:] and np.all(speed > 0)


def test_a_timing_trial_reads_the_tiled_wind_files_and_gives_the_oracles_results(tmp_path, monkeypatch):
    from threadprobe.probe import PURPOSE_ENV
    from threadprobe.probes._common import tiled

    probe = iris_netcdf.WindChunks()
    probe.prepare(tmp_path)
    monkeypatch.setenv(PURPOSE_ENV, "oracle")
    oracle = probe.open(tmp_path)
    expected = [digest(probe.task(oracle, i)) for i in range(2)]  # as the oracle's workers compute them
    monkeypatch.setenv(PURPOSE_ENV, "timing")
    timing = probe.open(tmp_path)
    assert timing[0].shape == tiled(iris_netcdf.WIND_LAYOUT, iris_netcdf.WIND_TILES).shape
    assert oracle[0].shape == iris_netcdf.WIND_LAYOUT.shape
    assert [digest(probe.task(timing, i)) for i in range(2)] == expected and expected[0] != expected[1]
