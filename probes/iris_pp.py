"""Probes of Iris's PP loader and saver, on real Met Office files and on generated ones.

The real files come from the ``iris-sample-data`` package (unpacked PP). WGDOS-packed PP needs
``mo_pack``, which is not on PyPI: that probe is listed as unavailable, with the reason.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import struct
import warnings

from threadprobe.probes._common import IRIS_PRELOAD, IRIS_RACE_SECONDS, Layout, out_dir
from threadprobe.probe import Probe, in_race_pass

# The small ones: uk_hires.pp (22 fields) and colpex.pp take 0.1-0.3 s to load, which a
# 3-minute diagnosis cannot afford dozens of times.
SAMPLE_FILES = ("air_temp.pp", "A1B.2098.pp", "E1.2098.pp", "pre-industrial.pp", "wind_speed_lake_victoria.pp")
NGENERATED = 4
LAYOUT = Layout(shape=(4, 73, 96), chunks=None, fill_value=None)
PRELOAD = IRIS_PRELOAD


def quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")
    return ctx


def cubes_summary(cubes) -> tuple:
    """Every cube's name, units, data and coordinates: what a load must reproduce exactly."""
    out = []
    for cube in sorted(cubes, key=lambda c: (c.name(), c.shape)):
        coords = tuple((c.name(), c.points) for c in sorted(cube.coords(), key=lambda c: c.name()))
        out.append((cube.name(), str(cube.units), cube.data, coords))
    return tuple(out)


def sample_dir() -> pathlib.Path:
    import iris_sample_data

    return pathlib.Path(iris_sample_data.__file__).parent / "sample_data"


def write_generated(workdir: pathlib.Path) -> None:
    import iris

    from threadprobe.probes.iris_netcdf import make_cube

    ctx = quiet()
    try:
        for k in range(NGENERATED):
            iris.save(make_cube(k, LAYOUT), str(workdir / f"gen{k}.pp"))
    finally:
        ctx.__exit__(None, None, None)


class _IrisPP(Probe):
    dependency = "scitools-iris"
    preload = PRELOAD
    iterations = 8  # a load takes ~40 ms here; the adaptive plan repeats trials where they are cheap
    race_seconds = IRIS_RACE_SECONDS

    def prepare(self, workdir):
        write_generated(workdir)

    def open(self, workdir):
        return workdir


class LoadRealiseSample(_IrisPP):
    """iris.load of real Met Office PP files (iris-sample-data), data realised."""

    name = "iris_pp.load_realise.sample"
    requires = PRELOAD + ("iris_sample_data",)

    def prepare(self, workdir):
        for name in SAMPLE_FILES:
            shutil.copy(sample_dir() / name, workdir / name)

    def task(self, workdir, i):
        import iris

        ctx = quiet()
        try:
            return cubes_summary(iris.load(str(workdir / SAMPLE_FILES[i % len(SAMPLE_FILES)])))
        finally:
            ctx.__exit__(None, None, None)


class LoadRealiseGenerated(_IrisPP):
    """iris.load of generated PP files (written through Iris's PP saver), data realised."""

    name = "iris_pp.load_realise.generated"

    def task(self, workdir, i):
        import iris

        ctx = quiet()
        try:
            return cubes_summary(iris.load(str(workdir / f"gen{i % NGENERATED}.pp")))
        finally:
            ctx.__exit__(None, None, None)


class LoadRawRealise(_IrisPP):
    """iris.load_raw of generated PP files: one cube per field, data realised."""

    name = "iris_pp.load_raw_realise.generated"

    def task(self, workdir, i):
        import iris

        ctx = quiet()
        try:
            return cubes_summary(iris.load_raw(str(workdir / f"gen{i % NGENERATED}.pp")))
        finally:
            ctx.__exit__(None, None, None)


class LoadMetadataManyTimes(_IrisPP):
    """iris.load of PP files of many time steps, data left lazy: what the load experiment runs
    concurrently. More distinct times than Iris's PP time cache holds (128), so loads evict."""

    name = "iris_pp.load_metadata.many_times"
    TIMES = 160  # per file; files do not share a time
    # The race pass loads files of a tenth the fields (about 30 s a load under helgrind for 160):
    # each field goes through the same native calls (cftime's date conversions, numpy), and the
    # time cache that the eviction stresses is a dict, the interpreter's memory, which the pass
    # leaves out whatever the size.
    RACE_TIMES = 16

    def prepare(self, workdir):
        from threadprobe.probes.iris_netcdf import make_cube

        ctx = quiet()
        try:
            for times, stem in ((self.TIMES, "many"), (self.RACE_TIMES, "many.race")):
                for k in range(NGENERATED):
                    iris_save(make_cube(k, Layout(shape=(times, 6, 8), chunks=None, fill_value=None)),
                              workdir / f"{stem}{k}.pp")
        finally:
            ctx.__exit__(None, None, None)

    def task(self, workdir, i):
        import iris

        stem = "many.race" if in_race_pass() else "many"
        ctx = quiet()
        try:
            cubes = iris.load(str(workdir / f"{stem}{i % NGENERATED}.pp"))
            return tuple(sorted((c.name(), str(c.units), c.shape, c.has_lazy_data(),
                                 tuple((x.name(), x.points.tobytes()) for x in c.coords())) for c in cubes))
        finally:
            ctx.__exit__(None, None, None)


def iris_save(cube, path: pathlib.Path) -> None:
    import iris

    iris.save(cube, str(path))


class FieldLoad(_IrisPP):
    """Field-level iris.fileformats.pp.load: headers and data of every field."""

    name = "iris_pp.field_load.generated"

    def task(self, workdir, i):
        import iris.fileformats.pp as pp

        fields = pp.load(str(workdir / f"gen{i % NGENERATED}.pp"))
        return tuple((f.lbft, f.lbuser[3], f.t1.isoformat(), f.data) for f in fields)


class LazyChunks(_IrisPP):
    """Chunks of one lazily loaded PP cube realised concurrently (the path of a dask compute)."""

    name = "iris_pp.lazy_chunks"

    def open(self, workdir):
        import iris

        ctx = quiet()
        try:
            cube = iris.load_cube(str(workdir / "gen0.pp"))
        finally:
            ctx.__exit__(None, None, None)
        assert cube.has_lazy_data()
        return cube.core_data()

    def task(self, lazy, i):
        # As in iris_netcdf.lazy_chunks: the harness's threads play dask's pool threads, each
        # realising one field through Iris's PP data proxy.
        return lazy[i % LAYOUT.shape[0]].compute(scheduler="synchronous")


class WindChunks(_IrisPP):
    """The wind workload's concurrent work on PP: fields realised through Iris, then its arithmetic."""

    name = "iris_pp.wind_chunks"
    iterations = 8
    timing_input = True

    def prepare(self, workdir):
        import iris

        from threadprobe.probes.iris_netcdf import make_cube, wind_inputs

        ctx = quiet()
        try:
            for layout, infix, data in wind_inputs():
                for k, name in enumerate(("x_wind", "y_wind")):
                    iris.save(make_cube(10 + k, layout, name, data(10 + k)), str(workdir / f"{name}{infix}.pp"))
        finally:
            ctx.__exit__(None, None, None)

    def open(self, workdir):
        import iris

        from threadprobe.probes.iris_netcdf import wind_files

        u_file, v_file = wind_files(".pp")  # the race pass's small ones there, the timing trials' big ones
        ctx = quiet()
        try:
            return (iris.load_cube(str(workdir / u_file)).core_data(),
                    iris.load_cube(str(workdir / v_file)).core_data())
        finally:
            ctx.__exit__(None, None, None)

    def task(self, ctx, i):
        from threadprobe.probes.iris_netcdf import wind_task

        return wind_task(ctx, i)


class Save(_IrisPP):
    """Concurrent iris.save of different cubes to separate PP files, read back serially."""

    name = "iris_pp.save"

    def prepare(self, workdir):
        pass

    def open(self, workdir):
        return out_dir(workdir)

    def task(self, out, i):
        import iris

        from threadprobe.probes.iris_netcdf import make_cube

        path = out / f"{i}.pp"
        ctx = quiet()
        try:
            iris.save(make_cube(i, LAYOUT), str(path))
        finally:
            ctx.__exit__(None, None, None)
        return path

    def readback(self, out, i, path):
        import iris.fileformats.pp as pp

        return tuple((f.lbft, f.t1.isoformat(), f.bdx, f.data) for f in pp.load(str(path)))


class BadCorruptHeader(_IrisPP):
    """A PP file whose header record length is corrupt: a clear error from Iris, never a crash."""

    name = "iris_pp.bad_input.corrupt_header"
    iterations = 8

    def prepare(self, workdir):
        write_generated(workdir)
        data = bytearray((workdir / "gen0.pp").read_bytes())
        data[0:4] = struct.pack(">i", 12345)  # the Fortran record marker of the first header
        (workdir / "corrupt.pp").write_bytes(bytes(data))

    def task(self, workdir, i):
        import iris

        ctx = quiet()
        try:
            return cubes_summary(iris.load(str(workdir / "corrupt.pp")))
        finally:
            ctx.__exit__(None, None, None)


def test_data_dir() -> pathlib.Path | None:
    """iris-test-data: $OVERRIDE_TEST_DATA_REPOSITORY, else ../shared next to this checkout."""
    env = os.environ.get("OVERRIDE_TEST_DATA_REPOSITORY")
    candidates = [pathlib.Path(env)] if env else []
    candidates.append(pathlib.Path(__file__).resolve().parents[2] / "shared" / "iris-test-data" / "test_data")
    return next((c for c in candidates if c.is_dir()), None)


class LoadWgdosPacked(_IrisPP):
    """iris.load of a WGDOS-packed PP file (LBPACK 1), which needs mo_pack to unpack."""

    name = "iris_pp.load_realise.wgdos_packed"
    requires = PRELOAD + ("mo_pack",)
    unavailable_hint = "WGDOS-packed PP fields (LBPACK 1) cannot be read without it, and mo_pack is not on PyPI"

    def prepare(self, workdir):
        import mo_pack  # noqa: F401  (Iris needs it to unpack: without it, the probe is unavailable)

        root = test_data_dir()
        if root is None:
            raise FileNotFoundError("iris-test-data not found (set OVERRIDE_TEST_DATA_REPOSITORY)")
        shutil.copy(root / "PP" / "nzgust.pp", workdir / "packed.pp")

    def task(self, workdir, i):
        import iris

        ctx = quiet()
        try:
            return cubes_summary(iris.load(str(workdir / "packed.pp")))
        finally:
            ctx.__exit__(None, None, None)
