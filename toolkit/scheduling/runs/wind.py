"""The wind study: wind speed and direction from x/y wind, and their variances over time.

1. Load x_wind and y_wind lazily with Iris (picked by standard name, so both globs may match the
   same files), each joined along time across its files: metadata only, and every file is opened
   now, so that a bad input is reported before anything expensive.
2. Cut the time axis into *units*: slabs of consecutive time steps within one chunk of each
   variable, at most ``UNIT_BYTES`` per variable. A task reads the u slab and the v slab of its
   units together (Iris's lazy arrays, computed where the task runs), derives
   ``wind_speed = sqrt(u^2 + v^2)`` and ``wind_from_direction`` (degrees, meteorological: the
   direction the wind blows *from*, clockwise from north; a westerly, u > 0 and v = 0, comes from
   270 degrees), and returns small partial sums: count, sum and sum of squares of speed, sums of
   the direction's cosine and sine. Processes then move kilobytes of sums per pixel row, never
   megabytes of wind.
3. Add up the sums as computes return: the variance of speed (ddof=1), and the *circular* variance
   of direction, ``1 - R`` where R is the length of the mean unit vector (a plain variance of
   angles is wrong across north, where 359 and 1 degrees are 2 degrees apart, not 358).
4. Save both to netCDF with CF metadata, atomically (a temporary file, then a rename).

Units are independent, which is what lets a pilot time schedulers on real work (see pilot.py).
"""

from __future__ import annotations

import glob as globlib
import os
import signal
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any  # Any: Iris's cubes (Iris ships no types), numpy and dask arrays alike

from threadprobe.diagnosis.progress import NullProgress, Progress, phase
from threadprobe.probes._common import add_wind_sums
from threadprobe.records.errors import UsageError, one_line
from threadprobe.records import Choice, Scheduler
from threadprobe.scheduling import cache
from threadprobe.scheduling.pilot import Decider, Pilot
from threadprobe.scheduling.schedulers import Active
from threadprobe.scheduling.runs.display import PeakMemory, Tasks

if TYPE_CHECKING:
    from distributed import Client

CIRCULAR_HELP = (
    "direction's spread is the circular variance 1 - R (R: length of the mean unit vector of "
    "wind_from_direction), 0 for a steady direction and 1 for none at all; a plain variance of "
    "angles is wrong across north, where 359 and 1 degrees are 2 degrees apart, not 358"
)
UNIT_BYTES = 16 * 2**20  # per variable: small enough for a pilot to spend few units, big enough to amortise a task
MIN_UNITS = 192  # a unit is then at most about 0.5% of the run: a pilot's handful of them costs little


def expand(pattern: str, flag: str) -> list[Path]:
    found = sorted(Path(p) for p in globlib.glob(os.path.expanduser(pattern)))
    if not found:
        raise UsageError(f"{flag} {pattern!r} matches no file")
    return found


def netcdf_time_chunks(paths: list[Path], name: str) -> dict[str, int]:
    """The time chunking a netCDF input should be loaded with (Iris's ``CHUNK_CONTROL``), or {}.

    Iris gives a netCDF variable dask chunks as long as the file allows (a whole file, often),
    and a read of a few time steps then decompresses the whole chunk: cutting a 55-step chunk
    into units read it 5 times over. Loaded in unit-sized time chunks, every step is read once,
    with one open per unit. Judged from the first file that has ``name`` (a few milliseconds)."""
    import math

    try:
        import netCDF4
    except ImportError:
        return {}
    for path in paths:
        if path.suffix.lower() not in (".nc", ".nc4", ".cdf") or path.stat().st_size == 0:
            continue
        try:
            with netCDF4.Dataset(str(path)) as ds:
                var = next((v for v in ds.variables.values() if getattr(v, "standard_name", None) == name), None)
                if var is None or var.ndim < 2:
                    continue
                step_bytes = var.dtype.itemsize * math.prod(var.shape[1:])
                steps = var.shape[0] * len(paths)  # the files of a run are alike
                per_unit = max(1, min(UNIT_BYTES // max(1, step_bytes), -(-steps // MIN_UNITS)))
                return {var.dimensions[0]: per_unit}
        except OSError:
            return {}  # the load itself reports what is wrong with the file
    return {}


def load_variable(paths: list[Path], name: str, flag: str) -> tuple[Any, list[Path]]:
    """The cube of ``name`` from every file that has it, joined along time; one-line errors."""
    import iris
    from iris.cube import CubeList
    from iris.fileformats.netcdf.loader import CHUNK_CONTROL

    found = CubeList()
    sources = []
    for path in paths:
        if path.stat().st_size == 0:
            raise UsageError(f"cannot read {path}: the file is empty")
    chunks = netcdf_time_chunks(paths, name)
    for path in paths:
        try:
            with warnings.catch_warnings(), CHUNK_CONTROL.set(**chunks):
                warnings.simplefilter("ignore")
                cubes = iris.load(str(path), iris.NameConstraint(standard_name=name))
        except Exception as exc:  # the library's own words, on one line, naming the file
            message = one_line(exc)
            raise UsageError(f"cannot read {path}: {type(exc).__name__}: {message}") from None
        for cube in cubes:
            found.append(cube)
            sources.append(path)
    if not found:
        where = paths[0] if len(paths) == 1 else f"{len(paths)} files ({paths[0]} ...)"
        raise UsageError(f"no {name} (standard name) in {where} matched by {flag}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return found.concatenate_cube(), sources
    except Exception as exc:
        raise UsageError(f"{name} does not join along time across {flag}: {one_line(exc)}") from None


def check_grids(u: Any, v: Any, u_file: Path, v_file: Path) -> None:
    import numpy as np

    for coord in ("latitude", "longitude"):
        a, b = u.coord(coord).points, v.coord(coord).points
        if a.shape != b.shape or not np.allclose(a, b):
            raise UsageError(f"x_wind and y_wind grids differ: {u_file} has {a.size} {coord}s "
                             f"({a.min():g} to {a.max():g}), {v_file} has {b.size} ({b.min():g} to {b.max():g})")
    if u.shape != v.shape:
        raise UsageError(f"x_wind {u.shape} and y_wind {v.shape} differ in shape ({u_file}, {v_file})")
    if not np.array_equal(u.coord("time").points, v.coord("time").points):
        raise UsageError(f"x_wind and y_wind cover different times ({u_file}, {v_file})")


def load_pair(x_glob: str, y_glob: str) -> tuple[Any, Any, tuple[Path, ...]]:
    """Step 1: both variables, checked against each other; nothing computed."""
    u, u_files = load_variable(expand(x_glob, "--x-wind"), "x_wind", "--x-wind")
    v, v_files = load_variable(expand(y_glob, "--y-wind"), "y_wind", "--y-wind")
    check_grids(u, v, u_files[0], v_files[0])
    if u.coord_dims("time") != (0,):
        raise UsageError("x_wind's first dimension must be time")
    return u, v, tuple(u_files + v_files)


class Slab:
    """Some time steps of a lazy array, sliced and culled in the parent (a graph of a few keys),
    read where the task runs. Sliced in the task instead, every read would cull the whole file
    set's graph, holding the GIL: 40 ms a read, a fifth of a serial run on the bench data, and
    400 KB of graph pickled to a process per task."""

    def __init__(self, array: Any, start: int, stop: int) -> None:
        import dask

        (self.array,) = dask.optimize(array[start:stop])

    def read(self) -> Any:
        import numpy as np

        return np.ma.asarray(self.array.compute(scheduler="synchronous"))


class Units:
    """One task's units, carried opaquely (dask does not look inside plain objects), so that a
    task reads its u and v itself and a process scheduler ships a few keys per task, never the data."""

    def __init__(self, u_slabs: Sequence[Slab], v_slabs: Sequence[Slab]) -> None:
        self.u, self.v = list(u_slabs), list(v_slabs)

    def sums(self) -> tuple[Any, ...]:
        return partial_sums(self.u, self.v)


def partial_sums(u_slabs: Sequence[Slab], v_slabs: Sequence[Slab]) -> tuple[Any, ...]:
    """Count, sum and sum of squares of speed, and sums of the direction's cosine and sine, per
    pixel, over every time step of the slabs (float64): ``add_wind_sums``, the arithmetic the wind
    probes time too, so that what the diagnosis measures is this."""
    sums: Any = None
    for us, vs in zip(u_slabs, v_slabs):
        sums = add_wind_sums(sums, us.read(), vs.read())
    assert sums is not None
    return tuple(sums)


def combine(parts: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The sum of several tasks' partial sums, into the first one's arrays (no new memory)."""
    total = list(parts[0])
    for more in parts[1:]:
        for a, b in zip(total, more):
            a += b
    return tuple(total)


def finish(sums: tuple[Any, ...]) -> tuple[Any, Any]:
    """Speed variance (ddof=1) and the circular variance of direction, masked where undefined."""
    import numpy as np

    n, s1, s2, c, s = sums
    with np.errstate(invalid="ignore", divide="ignore"):
        speed_var = (s2 - s1 * s1 / n) / (n - 1)
        circ = 1.0 - np.sqrt((c / n) ** 2 + (s / n) ** 2)
    speed_var = np.ma.masked_where(n < 2, np.maximum(speed_var, 0.0)).astype("f4")
    circ = np.ma.masked_where(n < 1, circ).astype("f4")
    return speed_var, circ


class WindJob:
    """The study's work, cut into units (time slabs); computed units keep their partial sums."""

    def __init__(self, u: Any, v: Any, unit_bytes: int = UNIT_BYTES) -> None:
        import dask

        self.u, self.v = u, v
        # Iris builds a graph of one layer per field (889 layers for 440 PP fields); flattened once
        # here, a task's read of a slab costs a third as much, and most of what remains is I/O.
        self.u_lazy, self.v_lazy = dask.optimize(u.core_data(), v.core_data())
        self.bounds = self._units(unit_bytes)
        self.units = len(self.bounds)
        self.sizes = [b - a for a, b in self.bounds]  # time steps: what a unit costs, near enough
        # A running total, added to as each compute returns: kept per task instead, a pilot's many
        # small tasks would hold 50 MB of sums apiece (2.5 GB on the bench data), and the page
        # faults of that growth slowed every candidate it timed by a quarter.
        self.total: tuple[Any, ...] | None = None

    def signature(self, fmt: str | None) -> dict[str, Any]:
        """This input's shape of work, for the choice cache: both fields' grids, chunks and sizes."""
        return cache.signature(fmt, [self.u.core_data(), self.v.core_data()], self.units)

    def _units(self, unit_bytes: int) -> list[tuple[int, int]]:
        """Time ranges of about ``unit_bytes`` per variable that never cut a chunk of either
        variable in a way that reads it twice: small chunks (a PP field each) are grouped whole,
        big ones (a netCDF file) are split in pieces."""
        u_lazy, v_lazy = self.u_lazy, self.v_lazy
        edges = {0, self.u.shape[0]}
        for lazy in (u_lazy, v_lazy):
            position = 0
            for size in lazy.chunks[0]:
                position += size
                edges.add(position)
        step_bytes = max(1, int(u_lazy.dtype.itemsize * (u_lazy.size // max(1, self.u.shape[0]))))
        total = self.u.shape[0]
        per_unit = max(1, min(unit_bytes // step_bytes, -(-total // MIN_UNITS)))
        bounds: list[tuple[int, int]] = []
        start = 0
        cuts = sorted(edges)
        for a, b in zip(cuts, cuts[1:]):
            if b - a > per_unit:  # a big chunk: close the group, then cut it in pieces
                if start < a:
                    bounds.append((start, a))
                pieces = -(-(b - a) // per_unit)
                step = -(-(b - a) // pieces)
                bounds += [(x, min(b, x + step)) for x in range(a, b, step)]
                start = b
            elif b - start > per_unit:  # this small chunk would overfill the group
                bounds.append((start, a))
                start = a
        if start < total:
            bounds.append((start, total))
        return bounds

    def run(self, active: Active, units: Sequence[int], tasks: int,
            on_done: Callable[[str], None] | None = None) -> None:
        import dask

        units = sorted(units)
        tasks = max(1, min(tasks, len(units)))
        groups = [units[k::tasks] for k in range(tasks)]
        work = Units.sums  # a global lock, if any, is held around every task by the pool or the workers
        delayed = [dask.delayed(work, pure=False, name=f"threadprobe-wind-{g[0]}")(
            Units([Slab(self.u_lazy, *self.bounds[i]) for i in g], [Slab(self.v_lazy, *self.bounds[i]) for i in g]))
            for g in groups if g]
        results = active.compute(*delayed, on_done=on_done)
        self.total = combine(([self.total] if self.total is not None else []) + list(results))

    def result_cubes(self) -> list[Any]:
        """The two result cubes, from every unit's sums."""
        from iris.coords import CellMethod

        if self.total is None:
            raise RuntimeError("no unit computed")
        speed_var, circ = finish(self.total)
        import iris.analysis

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The collapsed grid and coordinates (time with the bounds of the whole period); its
            # lazy data is replaced, never computed.
            template = self.u.collapsed("time", iris.analysis.MEAN)
        speed = template.copy(data=speed_var)
        speed.standard_name, speed.var_name, speed.units = "wind_speed", "wind_speed_variance", "m2 s-2"
        speed.cell_methods = (CellMethod("variance", coords=("time",)),)
        direction = template.copy(data=circ)
        direction.standard_name = None
        direction.long_name = "circular_variance_of_wind_from_direction"
        direction.var_name = "wind_from_direction_circular_variance"
        direction.units = "1"
        direction.cell_methods = (CellMethod("variance", coords=("time",),
                                             comments=("circular: 1 - mean resultant length",)),)
        for cube in (speed, direction):
            cube.attributes.pop("STASH", None)  # the UM code of x_wind does not describe a derived field
            cube.attributes["source"] = "threadprobe run wind"
        return [speed, direction]


def save_atomic(cubes: list[Any], out: Path) -> None:
    """Write to a temporary name beside ``out``, then rename: readers never see half a file."""
    import iris

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            iris.save(cubes, str(tmp), saver="nc")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


class _Terminated(Exception):
    pass


def _on_term(signum: int, frame: Any) -> None:
    raise _Terminated(f"terminated by signal {signum}")


@dataclass(frozen=True)
class RunResult:
    out: Path
    choice: Choice
    seconds: float  # load to save
    compute_seconds: float  # the units after the pilot
    pilot: Pilot | None = None
    peak_memory: int | None = None  # bytes: this process and its children, at the highest
    decide_seconds: float = 0.0  # choosing the scheduler: the safety lookup, then a cached answer or a pilot


def run(x_glob: str, y_glob: str, out: Path, decider: Decider, progress: Progress | None = None,
        on_client: Callable[[Client], None] | None = None, unit_bytes: int = UNIT_BYTES) -> RunResult:
    """The whole wind workload. ``decider`` picks the scheduler (explicitly, or by a pilot)."""
    started = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _on_term)  # SIGTERM unwinds, so no temporary is left
    try:
        with PeakMemory() as memory, ExitStack() as stack:
            u, v, _ = load_pair(x_glob, y_glob)
            job = WindJob(u, v, unit_bytes)
            deciding = time.perf_counter()
            choice, active, pilot = decider(job, stack)
            decided = time.perf_counter() - deciding
            if on_client is not None and active.client is not None:
                on_client(active.client)
            rest = [k for k in range(job.units) if k not in set(pilot.done if pilot else ())]
            began = time.perf_counter()
            if rest:
                workers = max(1, choice.n_workers * choice.threads_per_worker)
                tasks = min(len(rest), 4 * workers) if choice.scheduler != Scheduler.SYNCHRONOUS else 1
                with phase(progress or NullProgress(), "wind") as shown:
                    job.run(active, rest, tasks, on_done=Tasks(shown, "compute", tasks).done)
            computed = time.perf_counter() - began
            cubes = job.result_cubes()
        save_atomic(cubes, out)  # outside the scheduler: Iris's saver refuses a processes scheduler
        return RunResult(out, choice, time.perf_counter() - started, computed, pilot, memory.peak, decided)
    except _Terminated:
        raise SystemExit(143) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
