"""Probes of Iris's netCDF paths, which guard netCDF4 with Iris's own global lock.

Iris wraps every netCDF4 object in ``_thread_safe_nc`` and takes ``_GLOBAL_NETCDF4_LOCK``
around each access. Whether that covers every call is what these probes measure, along three
paths that differ inside Iris:

- ``load_realise``: whole ``iris.load_cube`` calls with ``.data`` realised, several files at once,
  as the study's parallel loading does;
- ``lazy_chunks``: the chunks of one lazily loaded cube realised concurrently; the harness's
  threads play the part of dask's threaded-scheduler pool, entering
  ``NetCDFDataProxy.__getitem__`` exactly as the pool's threads do;
- ``save``: concurrent ``iris.save`` to separate netCDF files, read back serially.
"""

from __future__ import annotations

import pathlib
import warnings

from threadprobe.probes._common import (IRIS_PRELOAD, IRIS_RACE_SECONDS, Layout, fold, out_dir, tiled,
                                        tiled_values, values, wind_chunk)
from threadprobe.probe import Probe, in_race_pass, in_timing_trial

NFILES = 4
REPRO_CUBE = '''
import iris
import numpy as np
from iris.coords import DimCoord
from iris.cube import Cube


def cube(seed):
    coords = [(DimCoord(np.arange(6.0) * 6, standard_name="time", units="hours since 1970-01-01"), 0),
              (DimCoord(np.linspace(-90, 90, 48), standard_name="latitude", units="degrees"), 1),
              (DimCoord(np.linspace(0, 355, 64), standard_name="longitude", units="degrees"), 2)]
    data = np.random.default_rng(seed).standard_normal((6, 48, 64)).astype("f4")
    return Cube(data, standard_name="x_wind", units="m s-1", dim_coords_and_dims=coords)
'''
LAYOUT = Layout(shape=(6, 48, 64), chunks=(1, 48, 64), fill_value=None)
PRELOAD = IRIS_PRELOAD


def make_cube(seed: int, layout: Layout = LAYOUT, name: str = "x_wind", data=None):
    """A small CF cube on a global grid: time, latitude, longitude, with realistic metadata (its
    data ``values(layout, seed)`` unless given)."""
    import numpy as np
    from cf_units import Unit
    from iris.coords import DimCoord
    from iris.cube import Cube

    nt, ny, nx = layout.shape
    time = DimCoord(np.arange(nt, dtype="f8") * 6 + seed * 1000, standard_name="time",
                    units=Unit("hours since 1970-01-01 00:00:00", calendar="standard"))
    lat = DimCoord(np.linspace(-90, 90, ny), standard_name="latitude", units="degrees")
    lon = DimCoord(np.linspace(0, 360, nx, endpoint=False), standard_name="longitude", units="degrees",
                   circular=True)
    lat.guess_bounds()
    lon.guess_bounds()
    cube = Cube(values(layout, seed) if data is None else data, standard_name=name, units="m s-1",
                dim_coords_and_dims=[(time, 0), (lat, 1), (lon, 2)],
                attributes={"source": "threadprobe synthetic UM-like output", "um_stash_source": "m01s00i002"})
    return cube


def save_quietly(cube, path: pathlib.Path, **kwargs: object) -> None:
    import iris

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iris.save(cube, str(path), **kwargs)


def summary(cube) -> tuple:
    """What a load must reproduce exactly: data, coordinates and the metadata that matters."""
    return (
        cube.data,
        cube.coord("time").points,
        cube.coord("latitude").points,
        str(cube.units),
        cube.name(),
        sorted((k, str(v)) for k, v in cube.attributes.items()),
    )


class _IrisNetcdf(Probe):
    dependency = "scitools-iris"
    preload = PRELOAD
    # Each load takes ~8 ms, almost all of it Iris's own Python; what gives a race its chances is
    # the number of loads (each makes ~140 netCDF4 calls), so trials carry 48 of them (~0.4 s).
    # Measured: with 16, four threads under load on 2 cores missed the crash in 3 trials of 3.
    iterations = 48
    race_seconds = IRIS_RACE_SECONDS

    def prepare(self, workdir):
        for k in range(NFILES):
            save_quietly(make_cube(k), workdir / f"wind{k}.nc", zlib=True, chunksizes=LAYOUT.chunks)

    def open(self, workdir):
        return workdir


class LoadRealise(_IrisNetcdf):
    """Concurrent iris.load_cube(...).data of several files (the study's parallel loading)."""

    name = "iris_netcdf.load_realise"
    reproducer = REPRO_CUBE + '''

def setup(work):
    paths = [os.path.join(work, f"wind{k}.nc") for k in range(4)]
    for k, path in enumerate(paths):
        iris.save(cube(k), path)
    return paths


def task(paths, i):  # concurrent iris.load_cube(...).data of several files
    return iris.load_cube(paths[i % 4]).data.tobytes()
'''

    def task(self, workdir, i):
        import iris

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return summary(iris.load_cube(str(workdir / f"wind{i % NFILES}.nc")))


class LazyChunks(_IrisNetcdf):
    """Chunks of one lazily loaded cube realised concurrently (the path of a dask compute)."""

    name = "iris_netcdf.lazy_chunks"
    iterations = 24

    def open(self, workdir):
        import iris

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cube = iris.load_cube(str(workdir / "wind0.nc"))
        assert cube.has_lazy_data()
        return cube.core_data()

    def task(self, lazy, i):
        # One chunk per task, computed synchronously: the concurrency comes from the harness's
        # threads, as it comes from the pool's threads under dask's threaded scheduler.
        return lazy[i % LAYOUT.shape[0]].compute(scheduler="synchronous")


WIND_LAYOUT = Layout(shape=(16, 240, 320), chunks=(1, 240, 320), fill_value=None)
WIND_STEPS = 8  # time steps per task: a 2.4 MB slab per variable, like the workload's big chunks
#: The race pass's wind input (``in_race_pass``): the same time steps, chunking and compression on
#: a grid a hundredth the size. Under helgrind a task on the full grid takes about 20 s, and the
#: pass needs the calls to overlap in the same code (HDF5's chunk reads, dask, numpy), not the size.
RACE_WIND_LAYOUT = Layout(shape=(16, 24, 32), chunks=(1, 24, 32), fill_value=None)
#: The timing trials' wind input (``Probe.timing_input``): the stress input tiled 2 x 2, a 480 x 640
#: grid, so that a task reads and sums 2.5 million points a variable, as a unit of ``run wind`` does on
#: the wind bench (2 steps of 960 x 1280). With the study's arithmetic, on 2 cores (GIL build, 7
#: repetitions, reports/bench-wind-probe-scale.json): on the 240 x 320 grid a task takes 50 ms, and
#: Python's per-task overhead held threads to x1.36 (PP) and x1.55 (netCDF), where the study runs
#: them at x1.78 and x1.86; on 480 x 640 the probe reads threads x1.74 in both formats.
WIND_TILES = (2, 2)


def wind_inputs():
    """The wind probes' inputs: (layout, file infix, data of the u and v cubes) for the stress
    input, the race pass's and the timing trials'."""
    return ((WIND_LAYOUT, "", lambda seed: values(WIND_LAYOUT, seed)),
            (RACE_WIND_LAYOUT, ".race", lambda seed: values(RACE_WIND_LAYOUT, seed)),
            (tiled(WIND_LAYOUT, WIND_TILES), ".timing", lambda seed: tiled_values(WIND_LAYOUT, seed, WIND_TILES)))


def wind_files(suffix: str) -> tuple[str, str]:
    """The u and v files a wind probe reads: the race pass's small ones in a race pass, the tiled
    ones in a timing trial."""
    infix = ".race" if in_race_pass() else ".timing" if in_timing_trial() else ""
    return f"x_wind{infix}{suffix}", f"y_wind{infix}{suffix}"


def wind_task(ctx, i: int) -> tuple:
    """A wind probe's task: one slab of time steps; on the timing input, folded back to the stress
    input's result (so that the oracle still judges it)."""
    found = wind_chunk(ctx[0], ctx[1], WIND_STEPS * (i % (WIND_LAYOUT.shape[0] // WIND_STEPS)), WIND_STEPS)
    return fold(found, WIND_TILES) if in_timing_trial() else found


class WindChunks(_IrisNetcdf):
    """The wind workload's concurrent work: u/v chunks realised through Iris, then its arithmetic."""

    name = "iris_netcdf.wind_chunks"
    iterations = 8  # ~0.05 s each (0.2 s on the timing input): four threads get two apiece
    timing_input = True

    def prepare(self, workdir):
        for layout, infix, data in wind_inputs():
            for k, name in enumerate(("x_wind", "y_wind")):
                save_quietly(make_cube(10 + k, layout, name, data(10 + k)), workdir / f"{name}{infix}.nc", zlib=True,
                             complevel=1, chunksizes=layout.chunks)

    def open(self, workdir):
        import iris

        u_file, v_file = wind_files(".nc")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            u = iris.load_cube(str(workdir / u_file))
            v = iris.load_cube(str(workdir / v_file))
        return u.core_data(), v.core_data()

    def task(self, ctx, i):
        # Like lazy_chunks, the harness's threads play the dask pool's; each chunk then goes through
        # the same numpy arithmetic as the workload (which releases the GIL for the heavy parts).
        return wind_task(ctx, i)


class Save(_IrisNetcdf):
    """Concurrent iris.save of different cubes to separate netCDF files, read back serially."""

    name = "iris_netcdf.save"
    reproducer = REPRO_CUBE + '''

def setup(work):
    return work


def task(work, i):  # concurrent iris.save of different cubes to separate files, read back
    path = os.path.join(work, f"{threading.get_ident()}-{i}.nc")
    iris.save(cube(i), path)
    return iris.load_cube(path).data.tobytes()
'''

    def prepare(self, workdir):
        pass

    def open(self, workdir):
        return out_dir(workdir)

    def task(self, out, i):
        path = out / f"{i}.nc"
        save_quietly(make_cube(i), path)
        return path

    def readback(self, out, i, path):
        import netCDF4

        with netCDF4.Dataset(path) as ds:
            var = ds.variables["x_wind"]
            return (var[...], var.standard_name, var.units, ds.variables["time"][...],
                    str(ds.variables["time"].units))
