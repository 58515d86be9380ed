"""make-data: UM-like, CF-correct, deterministic, and the same in both formats."""

import warnings

import iris
import numpy as np

from threadprobe.scheduling.runs.data import DataSpec, field_values, make_data


def load(path, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return iris.load_cube(str(path), iris.NameConstraint(standard_name=name))


def test_files_are_cf_wind_on_a_global_grid_with_continuing_times(wind_nc):
    u0, u1 = load(wind_nc / "x_wind_000.nc", "x_wind"), load(wind_nc / "x_wind_001.nc", "x_wind")
    v0 = load(wind_nc / "y_wind_000.nc", "y_wind")
    assert u0.standard_name == "x_wind" and v0.standard_name == "y_wind" and str(u0.units) == "m s-1"
    assert [c.name() for c in u0.dim_coords] == ["time", "latitude", "longitude"]
    assert u1.coord("time").points[0] == u0.coord("time").points[-1] + 1
    lat = u0.coord("latitude").points
    jet = np.abs(u0.data.mean(axis=(0, 2)))
    assert lat[np.argmax(jet)] > 30 or lat[np.argmax(jet)] < -30  # the jet is in mid-latitudes
    assert 5 < float(np.sqrt((u0.data ** 2).mean())) < 40  # realistic magnitudes


def test_data_is_deterministic_for_a_seed_and_differs_between_seeds(tmp_path):
    a = field_values("x_wind", 1, 5, 0, 10, 12)
    assert np.array_equal(a, field_values("x_wind", 1, 5, 0, 10, 12))
    assert not np.array_equal(a, field_values("x_wind", 2, 5, 0, 10, 12))
    assert not np.array_equal(a, field_values("y_wind", 1, 5, 0, 10, 12))


def test_pp_and_netcdf_hold_the_same_values(wind_nc, wind_pp):
    nc = load(wind_nc / "y_wind_001.nc", "y_wind")
    pp = load(wind_pp / "y_wind_001.pp", "y_wind")
    assert np.array_equal(nc.data, pp.data)
    assert pp.attributes["STASH"] == "m01s00i003"


def test_model_levels_and_size(tmp_path):
    spec = DataSpec(tmp_path, files=1, size_mb=0.1, fmt="nc", ny=10, nx=20, levels=3)
    make_data(spec)
    cube = load(tmp_path / "x_wind_000.nc", "x_wind")
    assert cube.shape == (spec.times, 3, 10, 20) and cube.coord("model_level_number").points.tolist() == [1, 2, 3]
    assert spec.times == 44  # 0.1 MiB of 3 x 10 x 20 float32 fields
