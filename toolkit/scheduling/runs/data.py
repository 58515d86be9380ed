"""UM-like x_wind / y_wind model output for the runner, at any size up to the study's 1.5 GB files.

Each file holds one variable (``x_wind`` or ``y_wind``, CF standard names, m s-1) on a global
latitude/longitude grid, for a segment of hourly times (file k continues where file k-1 ended),
optionally on model levels. Values are a jet stream (westerlies peaking near 45 degrees, an
easterly trade belt) plus weather noise, so that speeds and directions vary like real winds;
they depend on the seed, the file, the variable and the time step only. Data is generated lazily
one field at a time and saved through Iris (netCDF: chunked, zlib; PP: Iris's PP saver), so even
a 1.5 GB file never sits in memory, and written atomically (a temporary name, then a rename).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from threadprobe.diagnosis.progress import Count, NullProgress, Progress, Update, phase
from threadprobe.records.errors import UsageError

FIELD_SEEDS = {"x_wind": 2, "y_wind": 3}
STASH = {"x_wind": "m01s00i002", "y_wind": "m01s00i003"}  # the UM's codes for u and v


@dataclass(frozen=True)
class DataSpec:
    out: Path
    files: int = 8  # x/y pairs
    size_mb: float = 64.0  # data per file, uncompressed
    fmt: str = "nc"
    ny: int = 480
    nx: int = 640
    levels: int = 0  # 0: no model-level dimension
    seed: int = 0

    @property
    def field_bytes(self) -> int:
        return self.ny * self.nx * 4 * max(1, self.levels)

    @property
    def times(self) -> int:
        return max(1, math.ceil(self.size_mb * 2**20 / self.field_bytes))


def field_values(name: str, seed: int, step: int, levels: int, ny: int, nx: int):
    """One time step of one variable: deterministic in (name, seed, step), float32."""
    import numpy as np

    rng = np.random.default_rng([seed, FIELD_SEEDS[name], step])
    lat = np.deg2rad(np.linspace(-90 + 90 / ny, 90 - 90 / ny, ny))[:, None]
    lon = np.deg2rad(np.linspace(0, 360, nx, endpoint=False))[None, :]
    phase = 2 * math.pi * step / 120.0  # weather systems drift over five days
    if name == "x_wind":
        mean = 35 * np.exp(-(((np.abs(lat) - np.deg2rad(45)) / 0.25) ** 2)) - 8 * np.cos(lat) ** 8
        mean = mean + 10 * np.sin(3 * lon + phase) * np.cos(lat) ** 2
    else:
        mean = 12 * np.sin(4 * lon - phase) * np.sin(2 * lat) ** 2
    shape = (max(1, levels), ny, nx)
    noise = rng.normal(0.0, 6.0, size=shape)
    scale = np.linspace(0.6, 1.4, shape[0])[:, None, None]  # winds strengthen with height
    out = (mean[None] * scale + noise).astype("f4")
    return out if levels else out[0]


def lazy_cube(name: str, spec: DataSpec, file_index: int):
    """A cube whose data is generated one time step at a time, on demand."""
    import dask.array as da
    import numpy as np
    from cf_units import Unit
    from iris.coords import DimCoord
    from iris.cube import Cube
    from iris.fileformats.pp import STASH as Stash

    nt = spec.times
    start = file_index * nt
    shape = ((nt, spec.levels) if spec.levels else (nt,)) + (spec.ny, spec.nx)
    chunks = ((1, spec.levels) if spec.levels else (1,)) + (spec.ny, spec.nx)

    def block(_, block_info=None):
        step = start + block_info[None]["array-location"][0][0]
        return field_values(name, spec.seed, step, spec.levels, spec.ny, spec.nx)[None]

    data = da.zeros(shape, chunks=chunks, dtype="f4").map_blocks(block, dtype="f4")
    hours = Unit("hours since 1970-01-01 00:00:00", calendar="standard")
    time = DimCoord(np.arange(start, start + nt, dtype="f8"), standard_name="time", units=hours)
    lat = DimCoord(np.linspace(-90 + 90 / spec.ny, 90 - 90 / spec.ny, spec.ny), standard_name="latitude",
                   units="degrees")
    lon = DimCoord(np.linspace(0, 360, spec.nx, endpoint=False), standard_name="longitude", units="degrees",
                   circular=True)
    dims = [(time, 0)]
    if spec.levels:
        dims.append((DimCoord(np.arange(1, spec.levels + 1), standard_name="model_level_number", units="1"), 1))
    offset = len(dims)
    dims += [(lat, offset), (lon, offset + 1)]
    cube = Cube(data, standard_name=name, units="m s-1", dim_coords_and_dims=dims,
                attributes={"source": "threadprobe synthetic UM-like output", "STASH": Stash.from_msi(STASH[name])})
    return cube


def paths(spec: DataSpec, k: int) -> dict[str, Path]:
    return {name: spec.out / f"{name}_{k:03d}.{spec.fmt}" for name in ("x_wind", "y_wind")}


def write_file(cube, path: Path, fmt: str) -> None:
    import iris

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "nc":
                chunks = tuple(1 for _ in cube.shape[:-2]) + cube.shape[-2:]
                iris.save(cube, str(tmp), saver="nc", zlib=True, complevel=1, chunksizes=chunks)
            else:
                iris.save(cube, str(tmp), saver="pp")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def make_data(spec: DataSpec, progress: Progress | None = None) -> list[Path]:
    """Write ``spec.files`` x/y pairs. Returns the paths written."""
    if spec.fmt not in ("nc", "pp"):
        raise UsageError(f"--data-format must be nc or pp, not {spec.fmt!r}")
    if spec.files < 1 or spec.size_mb <= 0:
        raise UsageError("--pairs and --size-mb must be positive")
    spec.out.mkdir(parents=True, exist_ok=True)
    jobs = [(name, k, path) for k in range(spec.files) for name, path in paths(spec, k).items()]
    written: list[Path] = []
    with phase(progress or NullProgress(), "make-data") as shown:
        for name, k, path in jobs:
            write_file(lazy_cube(name, spec, k), path, spec.fmt)
            written.append(path)
            shown.update(Update(path.name, "written", run=Count(len(written), "files", len(jobs))))
    return written
