"""What the built-in probes share: a data layout, deterministic values, and file writers.

A ``Layout`` (shape, dtype, chunking, compression, fill value) says what a probe's input files
look like. Tests draw layouts from hypothesis strategies and check, for many of them, that what
a probe reads back equals what was written (the oracle is right) and that different data gives
different digests. Everything here is imported lazily by the probes, so that discovery never
imports numpy's users, and it uses only numpy and the library under test: a reproducer script
inlines this file as it is.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    shape: tuple[int, ...] = (24, 96, 128)  # time, y, x
    dtype: str = "f4"
    chunks: tuple[int, ...] | None = (1, 96, 128)  # None: contiguous
    compression: bool = True  # zlib (netCDF) / gzip (HDF5)
    fill_value: float | None = -999.0  # with a few values set to it, so masks are exercised


RAW = Layout(chunks=None, compression=False)
#: What every Iris probe's fork server imports: one server then serves them all.
#: What a fork server imports for the Iris probes: what their tasks would otherwise import in
#: every forked worker on first use. dask's compute imports ``distributed`` (about 200 modules)
#: when it is installed: natively that is a second per worker, under the race detector half a
#: minute per probe.
IRIS_PRELOAD = ("numpy", "netCDF4", "cf_units", "dask.array", "distributed", "iris", "iris.cube",
                "iris.fileformats.netcdf", "iris.fileformats._nc_load_rules.actions", "iris.fileformats.pp")


#: The race pass's time box per probe (``race_seconds``; ``--race-seconds`` replaces it): each thread
#: stops taking calls then, and the pass states its power from the calls it made. The default is
#: 10 s. A netCDF4, h5py, cf-units or cftime call takes milliseconds to a second under helgrind,
#: so 6 s still makes tens to hundreds of calls (about 40% fewer).
LIBRARY_RACE_SECONDS = 6.0
#: An Iris call takes seconds under helgrind, and each thread makes at least one: in 4 s an Iris
#: probe's pass made 2 to 8 calls (2 to 15 in 10 s; make races on 2 cores, 2026-12-07), the
#: bad-input probe, whose calls fail fast, about 80.
IRIS_RACE_SECONDS = 4.0


def values(layout: Layout, seed: int):
    """Deterministic data for one file or one task: ``seed`` picks it, nothing else."""
    import numpy as np

    rng = np.random.default_rng(seed)
    dtype = np.dtype(layout.dtype)
    if dtype.kind == "f":
        data = (rng.standard_normal(layout.shape) * 10 + 5).astype(dtype)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(max(info.min, -1000), min(info.max, 1000), size=layout.shape, dtype=dtype)
    if layout.fill_value is not None and data.size:
        flat = data.reshape(-1)
        flat[rng.integers(0, flat.size, size=max(1, flat.size // 50))] = np.asarray(layout.fill_value, dtype)
    return data


def expected(layout: Layout, seed: int):
    """What a correct reader returns for ``values``: masked where the fill value was written."""
    import numpy as np

    data = values(layout, seed)
    if layout.fill_value is None:
        return np.ma.masked_array(data, mask=np.zeros(data.shape, bool))
    return np.ma.masked_equal(data, np.asarray(layout.fill_value, data.dtype), copy=False)


def dims(layout: Layout) -> tuple[str, ...]:
    names = ("time", "y", "x", "z")
    return names[: len(layout.shape)]


def write_nc(path: pathlib.Path, layout: Layout, seed: int, var: str = "v") -> pathlib.Path:
    """A netCDF4 file with one variable laid out as asked, written atomically."""
    import netCDF4

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with netCDF4.Dataset(tmp, "w") as ds:
        create_nc_var(ds, layout, seed, var)
    os.replace(tmp, path)
    return path


def create_nc_var(ds, layout: Layout, seed: int, var: str = "v"):
    if var in ds.variables:  # timing trials repeat an index: rewrite the same variable
        ds.variables[var][...] = values(layout, seed)
        return ds.variables[var]
    for name, size in zip(dims(layout), layout.shape):
        if name not in ds.dimensions:
            ds.createDimension(name, size)
    kwargs: dict = {"fill_value": layout.fill_value if layout.fill_value is not None else False}
    if layout.chunks is None:
        kwargs["contiguous"] = not layout.compression
        kwargs["zlib"] = layout.compression
    else:
        kwargs.update(zlib=layout.compression, chunksizes=layout.chunks)
    v = ds.createVariable(var, layout.dtype, dims(layout), **kwargs)
    v.set_auto_mask(False)
    v[...] = values(layout, seed)
    v.set_auto_mask(True)
    return v


def write_h5(path: pathlib.Path, layout: Layout, seed: int, var: str = "v") -> pathlib.Path:
    import h5py

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with h5py.File(tmp, "w") as fh:
        create_h5_dataset(fh, layout, seed, var)
    os.replace(tmp, path)
    return path


def create_h5_dataset(fh, layout: Layout, seed: int, var: str = "v"):
    if var in fh:  # timing trials repeat an index: rewrite the same dataset
        fh[var][...] = values(layout, seed)
        return fh[var]
    kwargs: dict = {}
    if layout.chunks is not None:
        kwargs["chunks"] = layout.chunks
    if layout.compression:
        kwargs["compression"] = "gzip"
        kwargs.setdefault("chunks", True)
    if layout.fill_value is not None:
        kwargs["fillvalue"] = layout.fill_value
    return fh.create_dataset(var, data=values(layout, seed), **kwargs)


def h5_expected(layout: Layout, seed: int):
    """h5py does not mask fill values: a correct read returns the raw values."""
    return values(layout, seed)


def out_dir(workdir: pathlib.Path) -> pathlib.Path:
    """A fresh output folder for this worker process (trials never share written files)."""
    import tempfile

    base = workdir / "out"
    base.mkdir(exist_ok=True)
    return pathlib.Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))


def tiled(layout: Layout, tiles: tuple[int, int]) -> Layout:
    """The layout of ``layout``'s data repeated ``tiles`` times along its last two axes (a timing
    input: realistic size, and every tile's result equal to the original's)."""
    *lead, ny, nx = layout.shape
    chunks = None if layout.chunks is None else (*layout.chunks[:-2], layout.chunks[-2] * tiles[0],
                                                 layout.chunks[-1] * tiles[1])
    return Layout(shape=(*lead, ny * tiles[0], nx * tiles[1]), dtype=layout.dtype, chunks=chunks,
                  compression=layout.compression, fill_value=layout.fill_value)


def tiled_values(layout: Layout, seed: int, tiles: tuple[int, int]):
    """``values(layout, seed)`` repeated ``tiles`` times along the last two axes."""
    import numpy as np

    data = values(layout, seed)
    return np.tile(data, (1,) * (data.ndim - 2) + tuple(tiles))


def fold(results: tuple, tiles: tuple[int, int]) -> tuple:
    """A timing task's results on tiled data, folded back to what the stress input gives: each
    array's first tile when every tile equals it (elementwise work on equal data gives equal
    results), else the whole array, whose digest then differs from the oracle's (corruption in
    any tile is seen)."""
    import numpy as np

    out = []
    for r in results:
        *lead, ny, nx = r.shape
        blocks = r.reshape(*lead, tiles[0], ny // tiles[0], tiles[1], nx // tiles[1])
        first = blocks[..., :1, :, :1, :]
        same = np.array_equal(blocks, np.broadcast_to(first, blocks.shape))
        out.append(np.ascontiguousarray(first.reshape(*lead, ny // tiles[0], nx // tiles[1])) if same else r)
    return tuple(out)


#: Per float64 temporary inside a wind task (see ``add_wind_sums``).
BAND_BYTES = 2**20


def speed_and_direction(u, v):
    """Wind speed, and the direction the wind comes from in degrees clockwise from north (numpy
    or dask arrays alike)."""
    import numpy as np

    speed = np.sqrt(u * u + v * v)
    direction = np.mod(270.0 - np.degrees(np.arctan2(v, u)), 360.0)
    return speed, direction


def add_wind_sums(sums, u_all, v_all):
    """The wind study's per-task arithmetic (threadprobe's ``run wind``, and the wind probes that
    time it): ``sums`` (None: new zeros) plus, per pixel over the time steps of a u and a v slab
    (masked arrays), the count of valid steps, the sum and sum of squares of speed, and the sums
    of the direction's cosine and sine, in float64. Returns the (5, ...) array.

    Computed in bands of rows of about ``BAND_BYTES``: whole-slab float64 temporaries (tens of
    MB each) are mapped fresh from the kernel on every allocation, and their page faults were a
    third of a thread's time, most of it in the kernel, and the noisiest third. Bands this small
    are recycled by malloc and stay in cache."""
    import math

    import numpy as np

    if sums is None:
        sums = np.zeros((5,) + u_all.shape[1:])
    if u_all.ndim < 2:
        bands = [slice(None)]
    else:
        per_row = 8 * u_all.shape[0] * math.prod(u_all.shape[2:])
        rows = max(1, BAND_BYTES // max(1, per_row))
        bands = [slice(r, r + rows) for r in range(0, u_all.shape[1], rows)]
    for band in bands:
        at = (slice(None), band)
        u, v = u_all[at].astype("f8"), v_all[at].astype("f8")
        valid = ~(np.ma.getmaskarray(u) | np.ma.getmaskarray(v))
        u, v = np.ma.getdata(u), np.ma.getdata(v)
        speed, direction = speed_and_direction(u, v)
        theta = np.radians(direction)
        out = sums[(slice(None), band)]
        out[0] += valid.sum(axis=0)
        for k, x in enumerate((speed, speed * speed, np.cos(theta), np.sin(theta)), start=1):
            out[k] += np.where(valid, x, 0.0).sum(axis=0)
    return sums


def wind_chunk(u_lazy, v_lazy, start: int, steps: int):
    """The wind workload's per-task work: realise a slab of time steps of u and v through Iris's
    lazy data, as a task of ``run wind`` does, then its arithmetic (``add_wind_sums``).

    The slab matters: the workload's chunks are megabytes (a whole netCDF file is one chunk), so
    per-chunk Python overhead is small next to the numpy work; a probe with tiny chunks would
    measure Iris's overhead instead, and under-estimate how well threads scale.
    """
    import numpy as np

    u = np.ma.asarray(u_lazy[start:start + steps].compute(scheduler="synchronous"))
    v = np.ma.asarray(v_lazy[start:start + steps].compute(scheduler="synchronous"))
    return tuple(add_wind_sums(None, u, v))
