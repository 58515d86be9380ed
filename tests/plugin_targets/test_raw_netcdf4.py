"""A raw netCDF4 reading test, written to be run under --threadprobe-threads=2.

Run alone it passes: it opens a file, reads every slice, closes it. Under two threads the same
body crashes netcdf-c/HDF5 (or makes it fail with "NetCDF: HDF error"), and the plugin must
report that as this test's failure, every time, while the session goes on.
(Not collected by threadprobe's own suite: tests/pytest/test_plugin.py runs it in sessions.)
"""

import netCDF4
import numpy as np
import pytest


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    path = tmp_path_factory.mktemp("nc") / "shared.nc"
    with netCDF4.Dataset(path, "w") as ds:
        for name, n in (("t", 16), ("y", 64), ("x", 64)):
            ds.createDimension(name, n)
        v = ds.createVariable("v", "f4", ("t", "y", "x"), zlib=True, chunksizes=(1, 64, 64))
        v[:] = np.random.default_rng(0).random((16, 64, 64), dtype=np.float32)
    return path


def test_read_every_slice(path):
    for _ in range(40):
        with netCDF4.Dataset(path) as ds:
            for t in range(16):
                assert ds.variables["v"][t].shape == (64, 64)
