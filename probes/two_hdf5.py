"""Two copies of HDF5 in one process: netCDF4 and h5py used concurrently.

PyPI's netCDF4 and h5py wheels each bundle their own libhdf5, so a process that imports both
holds two HDF5 libraries with separate global state. h5py's lock guards only its own copy;
this probe has threads alternate between the two libraries on separate files. netCDF4 calls
are serialized among themselves (netCDF4 alone is known to fail under threads, and h5py
serializes itself), so the only concurrency left is netCDF4 against h5py: the two copies.
"""

from __future__ import annotations

import threading

from threadprobe.probes._common import LIBRARY_RACE_SECONDS, Layout, write_h5, write_nc
from threadprobe.probe import Probe

LAYOUT = Layout(shape=(24, 96, 128), chunks=(1, 96, 128))


class NetcdfAndH5py(Probe):
    """Even tasks read with netCDF4, odd tasks with h5py, concurrently in one process."""

    name = "two_hdf5.netcdf4_and_h5py"
    dependency = "netCDF4+h5py"
    preload = ("numpy", "netCDF4", "h5py")
    race_seconds = LIBRARY_RACE_SECONDS

    def prepare(self, workdir):
        write_nc(workdir / "a.nc", LAYOUT, seed=1)
        write_h5(workdir / "b.h5", LAYOUT, seed=2)

    def open(self, workdir):
        import h5py
        import netCDF4

        return netCDF4.Dataset(workdir / "a.nc"), h5py.File(workdir / "b.h5", "r"), threading.Lock()

    def task(self, ctx, i):
        ds, fh, netcdf_lock = ctx
        t = (i // 2) % LAYOUT.shape[0]
        if i % 2:
            return fh["v"][t]
        with netcdf_lock:
            return ds.variables["v"][t]

    def close(self, ctx):
        ctx[0].close()
        ctx[1].close()
