"""Fork safety: a process pool started with ``fork`` after the parent opened a netCDF4/HDF5 file.

This is what dask's processes scheduler does on Linux: the parent has already opened (and read)
files through netCDF4 or h5py, then forks workers that use the same libraries. A forked child
inherits the parent's HDF5 state, open file handles included. Each task runs in the pool, so in
threads mode several threads also submit to the pool at once.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

from threadprobe.probes._common import Layout, write_h5, write_nc
from threadprobe.probe import Probe

LAYOUT = Layout(shape=(24, 96, 128), chunks=(1, 96, 128))
_inherited: Any = None  # the parent's open handle (netCDF4 or h5py), inherited by the forked pool workers


def _read_nc_fresh(path: str, t: int):
    import netCDF4

    with netCDF4.Dataset(path) as ds:
        return ds.variables["v"][t]


def _read_nc_inherited(t: int):
    return _inherited.variables["v"][t]


def _read_h5_fresh(path: str, t: int):
    import h5py

    with h5py.File(path, "r") as fh:
        return fh["v"][t]


class _Fork(Probe):
    preload = ("numpy", "netCDF4", "h5py")
    iterations = 64
    suffix = ".nc"
    # The race pass reads the reports of this worker's own threads, which only hand tasks to the
    # pool: the libraries' calls run in the pool's two processes, whose reports it does not read,
    # and which run under the detector too. More seconds would mostly buy their work.
    race_seconds = 3.0

    def prepare(self, workdir):
        write_nc(workdir / "in.nc", LAYOUT, seed=5)
        write_h5(workdir / "in.h5", LAYOUT, seed=5)

    def open_parent(self, workdir):
        import netCDF4

        ds = netCDF4.Dataset(workdir / "in.nc")
        ds.variables["v"][0]  # the parent really uses the library before forking
        return ds

    def open(self, workdir):
        global _inherited
        _inherited = self.open_parent(workdir)
        pool = multiprocessing.get_context("fork").Pool(2)
        return {"pool": pool, "path": str(workdir / f"in{self.suffix}"), "handle": _inherited}

    def close(self, ctx):
        ctx["pool"].terminate()
        ctx["pool"].join()
        ctx["handle"].close()


class NetcdfFreshOpen(_Fork):
    """Parent opens a netCDF4 file, forks a pool; the children open and read it themselves."""

    name = "fork_safety.netcdf4_fresh_open_in_child"
    dependency = "netCDF4"

    def task(self, ctx, i):
        return ctx["pool"].apply(_read_nc_fresh, (ctx["path"], i % LAYOUT.shape[0]))


class NetcdfInherited(_Fork):
    """Parent opens a netCDF4 file, forks a pool; the children read through the inherited Dataset."""

    name = "fork_safety.netcdf4_inherited_dataset"
    dependency = "netCDF4"

    def task(self, ctx, i):
        return ctx["pool"].apply(_read_nc_inherited, (i % LAYOUT.shape[0],))


class H5pyFreshOpen(_Fork):
    """Parent opens an HDF5 file with h5py, forks a pool; the children open and read it themselves."""

    name = "fork_safety.h5py_fresh_open_in_child"
    dependency = "h5py"
    suffix = ".h5"

    def open_parent(self, workdir):
        import h5py

        fh = h5py.File(workdir / "in.h5", "r")
        fh["v"][0]
        return fh

    def task(self, ctx, i):
        return ctx["pool"].apply(_read_h5_fresh, (ctx["path"], i % LAYOUT.shape[0]))
