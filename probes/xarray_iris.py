"""Iris and xarray in one process: two libraries, two locks, one libnetcdf.

Most Iris users load xarray too. Each guards netCDF4 with a lock of its own (Iris's
``_GLOBAL_NETCDF4_LOCK``, xarray's ``NETCDFC_LOCK``), so neither excludes the other: under dask
threads, an Iris chunk read and an xarray read can be inside netcdf-c (and its HDF5) at once.
This probe does exactly that, each library through its own lazy path. It is unavailable
without xarray.
"""

from __future__ import annotations

import warnings

from threadprobe.probes._common import IRIS_PRELOAD, IRIS_RACE_SECONDS, Layout, write_nc
from threadprobe.probe import Probe

LAYOUT = Layout(shape=(24, 96, 128), chunks=(1, 96, 128), fill_value=None)
NFILES = 4


class IrisAndXarray(Probe):
    """Even tasks realise an Iris lazy chunk, odd tasks read through xarray, concurrently."""

    name = "xarray_iris.chunks_beside_open_dataset"
    dependency = "xarray+scitools-iris"
    preload = IRIS_PRELOAD + ("xarray",)
    iterations = 48
    race_seconds = IRIS_RACE_SECONDS

    def prepare(self, workdir):
        import xarray  # noqa: F401  (without it, the probe is unavailable)

        for k in range(NFILES):
            write_nc(workdir / f"in{k}.nc", LAYOUT, seed=k)

    def open(self, workdir):
        import iris
        import xarray  # noqa: F401

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lazy = iris.load_cube(str(workdir / "in0.nc")).core_data()
        return lazy, [workdir / f"in{k}.nc" for k in range(NFILES)]

    def task(self, ctx, i):
        import numpy as np
        import xarray

        lazy, paths = ctx
        t = (i // 2) % LAYOUT.shape[0]
        if i % 2 == 0:  # Iris: a chunk of a lazily loaded cube, under Iris's lock
            return np.ma.filled(lazy[t].compute(scheduler="synchronous"), np.nan)
        with xarray.open_dataset(paths[(i // 2) % NFILES], engine="netcdf4", cache=False) as ds:  # xarray's lock
            return ds["v"][t].values
