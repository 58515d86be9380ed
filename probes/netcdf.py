"""Probes of netCDF4-python and netcdf-c: reads and writes, shared and separate handles.

netcdf-c has no thread-safe build, and netCDF4-python releases the GIL around its calls, so
nothing stops two threads from being inside netcdf-c (and the HDF5 it bundles) at once. Each
variant's name says what its threads share: one Dataset, the same file through a Dataset per
thread, or nothing but the library. Each read variant exists with zlib-compressed chunked data
and with contiguous raw data, because they take different paths through HDF5.
"""

from __future__ import annotations

import pathlib
import threading

from threadprobe.probes._common import LIBRARY_RACE_SECONDS, RAW, Layout, create_nc_var, expected, out_dir, write_nc
from threadprobe.probe import Probe

NFILES = 8  # with 2 or 4 workers dealing i round-robin, each worker meets only its own files


def _writer(zlib: bool) -> str:
    """The reproducers' file writer: one float variable, as the probes' layout (24 x 96 x 128)."""
    layout = 'zlib=True, chunksizes=(1, 96, 128)' if zlib else 'contiguous=True'
    return f'''
import netCDF4
import numpy as np


def write(path, seed):
    with netCDF4.Dataset(path, "w") as ds:
        for name, size in (("t", 24), ("y", 96), ("x", 128)):
            ds.createDimension(name, size)
        ds.createVariable("v", "f4", ("t", "y", "x"), {layout})[:] = np.random.default_rng(seed).random((24, 96, 128))
    return path
'''


SHARED = '''

def setup(work):
    return netCDF4.Dataset(write(os.path.join(work, "in.nc"), 0))  # one Dataset, shared by every thread


def task(ds, i):
    return ds.variables["v"][i % 24].tobytes()
'''
PER_THREAD = '''

def setup(work):
    return write(os.path.join(work, "in.nc"), 0), threading.local()


def task(ctx, i):  # each thread opens its own Dataset on the same file, once
    path, local = ctx
    if not hasattr(local, "ds"):
        local.ds = netCDF4.Dataset(path)
    return local.ds.variables["v"][i % 24].tobytes()
'''
SEPARATE = '''

def setup(work):
    return [write(os.path.join(work, f"in{k}.nc"), k) for k in range(8)]


def task(paths, i):  # threads open, read and close different files: they share only the library
    with netCDF4.Dataset(paths[i % 8]) as ds:
        return ds.variables["v"][(i // 8) % 24].tobytes()
'''
WRITE_SEPARATE = '''

def setup(work):
    return work


def task(work, i):  # each task writes its own file, then reads it back
    with netCDF4.Dataset(write(os.path.join(work, f"out{i}.nc"), i)) as ds:
        return ds.variables["v"][...].tobytes()
'''
WRITE_SHARED = '''
NAMES = iter(range(10**9))  # a new variable each call: the serial run and every attempt share the file


def setup(work):
    ds = netCDF4.Dataset(os.path.join(work, "shared.nc"), "w")
    for name, size in (("y", 48), ("x", 64)):
        ds.createDimension(name, size)
    return ds


def task(ds, i):  # threads create and write different variables of one open file
    v = ds.createVariable(f"v{next(NAMES)}", "f4", ("y", "x"), zlib=True)
    v[:] = np.full((48, 64), i, "f4")
    return v[...].tobytes()
'''
BAD = '''

def setup(work):  # a truncated or an empty file
    good = open(write(os.path.join(work, "good.nc"), 0), "rb").read()
    with open(os.path.join(work, "bad.nc"), "wb") as fh:
        fh.write(good[: len(good) // 3] if TRUNCATE else b"")
    return fh.name


def task(path, i):  # every open must fail with netCDF's own message
    try:
        return str(netCDF4.Dataset(path))
    except OSError as exc:
        return str(exc)
'''


class _Netcdf(Probe):
    dependency = "netCDF4"
    preload = ("numpy", "netCDF4")
    layout = Layout()
    nfiles = 1
    race_seconds = LIBRARY_RACE_SECONDS

    def prepare(self, workdir: pathlib.Path) -> None:
        for k in range(self.nfiles):
            write_nc(workdir / f"in{k}.nc", self.layout, seed=k)

    def read(self, ds, i: int):
        return ds.variables["v"][i % self.layout.shape[0]]


class ReadSharedDataset(_Netcdf):
    """Every thread of a worker reads slices through one shared Dataset (zlib, chunked)."""

    name = "netcdf4.read_shared_dataset.zlib"
    reproducer = _writer(True) + SHARED

    def open(self, workdir):
        import netCDF4

        return netCDF4.Dataset(workdir / "in0.nc")

    def task(self, ds, i):
        return self.read(ds, i)

    def close(self, ds):
        ds.close()


class ReadSharedDatasetRaw(ReadSharedDataset):
    """As read_shared_dataset.zlib, on a contiguous uncompressed variable."""

    name = "netcdf4.read_shared_dataset.raw"
    layout = RAW
    reproducer = _writer(False) + SHARED


class ReadDatasetPerThread(_Netcdf):
    """Each thread opens its own Dataset on the same file and reads slices (zlib, chunked)."""

    name = "netcdf4.read_dataset_per_thread.zlib"
    reproducer = _writer(True) + PER_THREAD

    def open(self, workdir):
        return {"path": workdir / "in0.nc", "local": threading.local(), "all": []}

    def task(self, ctx, i):
        import netCDF4

        local = ctx["local"]
        if not hasattr(local, "ds"):
            local.ds = netCDF4.Dataset(ctx["path"])
            ctx["all"].append(local.ds)
        return self.read(local.ds, i)

    def close(self, ctx):
        for ds in ctx["all"]:
            ds.close()


class ReadDatasetPerThreadRaw(ReadDatasetPerThread):
    """As read_dataset_per_thread.zlib, on a contiguous uncompressed variable."""

    name = "netcdf4.read_dataset_per_thread.raw"
    layout = RAW
    reproducer = _writer(False) + PER_THREAD


class ReadSeparateFiles(_Netcdf):
    """Threads open, read and close different files: they share only the library (zlib)."""

    name = "netcdf4.read_separate_files.zlib"
    nfiles = NFILES
    reproducer = _writer(True) + SEPARATE

    def open(self, workdir):
        return workdir

    def task(self, workdir, i):
        import netCDF4

        with netCDF4.Dataset(workdir / f"in{i % self.nfiles}.nc") as ds:
            return self.read(ds, i // self.nfiles)


class ReadSeparateFilesRaw(ReadSeparateFiles):
    """As read_separate_files.zlib, on contiguous uncompressed variables."""

    name = "netcdf4.read_separate_files.raw"
    layout = RAW
    reproducer = _writer(False) + SEPARATE


class WriteSeparateFiles(_Netcdf):
    """Each task writes its own file (zlib); every file is read back serially afterwards."""

    name = "netcdf4.write_separate_files.zlib"
    layout = Layout(shape=(4, 48, 64), chunks=(1, 48, 64))
    reproducer = _writer(True) + WRITE_SEPARATE
    reproducer_iterations = 32

    def prepare(self, workdir):
        pass

    def open(self, workdir):
        return out_dir(workdir)

    def task(self, out, i):
        return write_nc(out / f"{i}.nc", self.layout, seed=i)

    def readback(self, out, i, path):
        import netCDF4

        with netCDF4.Dataset(path) as ds:
            return ds.variables["v"][...]


class WriteSharedFileVariables(_Netcdf):
    """Threads create and write different variables of one open file; read back serially."""

    name = "netcdf4.write_shared_file_variables.zlib"
    layout = Layout(shape=(4, 48, 64), chunks=(1, 48, 64))
    reproducer = _writer(True) + WRITE_SHARED

    def prepare(self, workdir):
        pass

    def open(self, workdir):
        import netCDF4

        return netCDF4.Dataset(out_dir(workdir) / "shared.nc", "w")

    def task(self, ds, i):
        create_nc_var(ds, self.layout, seed=i, var=f"v{i}")
        return f"v{i}"

    def readback(self, ds, i, var):
        ds.sync()
        return ds.variables[var][...]

    def close(self, ds):
        ds.close()


class BadTruncated(_Netcdf):
    """A truncated netCDF file: every read must fail with netCDF's own message, never crash."""

    name = "netcdf4.bad_input.truncated"
    iterations = 8
    reproducer = _writer(True) + "\nTRUNCATE = True\n" + BAD

    def prepare(self, workdir):
        good = write_nc(workdir / "good.nc", self.layout, seed=0)
        data = good.read_bytes()
        (workdir / "truncated.nc").write_bytes(data[: len(data) // 3])

    def task(self, workdir, i):
        import netCDF4

        with netCDF4.Dataset(workdir / "truncated.nc") as ds:
            return self.read(ds, i)

    def open(self, workdir):
        return workdir


class BadEmpty(BadTruncated):
    """An empty file: netCDF4 must refuse it with a clear message."""

    name = "netcdf4.bad_input.empty"
    reproducer = _writer(True) + "\nTRUNCATE = False\n" + BAD

    def prepare(self, workdir):
        (workdir / "truncated.nc").write_bytes(b"")
