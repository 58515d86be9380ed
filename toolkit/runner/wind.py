"""The wind study: wind speed and direction from x/y wind, and their variances over time.

Four steps, one computation:

1. load x_wind and y_wind lazily with Iris (picked by standard name, so both globs may match the
   same files), each joined along time across its files;
2. derive ``wind_speed = sqrt(u^2 + v^2)`` and ``wind_from_direction`` in degrees, the
   meteorological convention (the direction the wind blows *from*, clockwise from north:
   a westerly, u > 0 and v = 0, comes from 270 degrees);
3. collapse over time: the variance of speed, and the *circular* variance of direction,
   ``1 - R`` where R is the length of the mean unit vector. A plain variance of angles is wrong
   across north: winds from 359 and 1 degrees differ by 2 degrees, but their plain variance
   treats them as 358 degrees apart;
4. save both to netCDF with CF metadata, atomically (a temporary file, then a rename), so a
   killed run leaves no half-written output.

Nothing is computed before the single final compute of both results.
"""

from __future__ import annotations

import glob as globlib
import os
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import UsageError
from toolkit.runner.schedulers import Choice, activated, compute

CIRCULAR_HELP = (
    "direction's spread is the circular variance 1 - R (R: length of the mean unit vector of "
    "wind_from_direction), 0 for a steady direction and 1 for none at all; a plain variance of "
    "angles is wrong across north, where 359 and 1 degrees are 2 degrees apart, not 358"
)


def expand(pattern: str, flag: str) -> list[Path]:
    found = sorted(Path(p) for p in globlib.glob(os.path.expanduser(pattern)))
    if not found:
        raise UsageError(f"{flag} {pattern!r} matches no file")
    return found


def load_variable(paths: list[Path], name: str, flag: str):
    """The cube of ``name`` from every file that has it, joined along time; one-line errors."""
    import iris
    from iris.cube import CubeList

    found = CubeList()
    sources = []
    for path in paths:
        if path.stat().st_size == 0:
            raise UsageError(f"cannot read {path}: the file is empty")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cubes = iris.load(str(path), iris.NameConstraint(standard_name=name))
        except Exception as exc:  # the library's own words, on one line, naming the file
            message = " ".join(str(exc).split())[:300]
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
        raise UsageError(f"{name} does not join along time across {flag}: {' '.join(str(exc).split())[:300]}") from None


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


@dataclass(frozen=True)
class WindGraph:
    """The lazy results, before anything is computed."""

    speed_variance: Any  # cube
    direction_circular_variance: Any  # cube
    inputs: tuple[Path, ...]


def speed_and_direction(u_data: Any, v_data: Any) -> tuple[Any, Any]:
    """Wind speed, and the direction the wind comes from in degrees clockwise from north."""
    import dask.array as da

    speed = da.sqrt(u_data * u_data + v_data * v_data)
    direction = da.mod(270.0 - da.degrees(da.arctan2(v_data, u_data)), 360.0)
    return speed, direction


def circular_variance(direction_degrees: Any, axis: int = 0) -> Any:
    import dask.array as da

    theta = da.radians(direction_degrees)
    c = da.cos(theta).mean(axis=axis)
    s = da.sin(theta).mean(axis=axis)
    return 1.0 - da.sqrt(c * c + s * s)


def build(x_glob: str, y_glob: str) -> WindGraph:
    """Steps 1-3, lazily."""
    from iris.coords import CellMethod

    u, u_files = load_variable(expand(x_glob, "--x-wind"), "x_wind", "--x-wind")
    v, v_files = load_variable(expand(y_glob, "--y-wind"), "y_wind", "--y-wind")
    check_grids(u, v, u_files[0], v_files[0])
    speed, direction = speed_and_direction(u.core_data(), v.core_data())
    time_axis = u.coord_dims("time")[0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        template = u.collapsed("time", _first())  # the collapsed grid and coordinates, no data touched
    speed_var = template.copy(data=speed.var(axis=time_axis, ddof=1))
    speed_var.standard_name = "wind_speed"
    speed_var.var_name = "wind_speed_variance"
    speed_var.units = "m2 s-2"
    speed_var.cell_methods = (CellMethod("variance", coords=("time",)),)
    direction_var = template.copy(data=circular_variance(direction, axis=time_axis))
    direction_var.standard_name = None
    direction_var.long_name = "circular_variance_of_wind_from_direction"
    direction_var.var_name = "wind_from_direction_circular_variance"
    direction_var.units = "1"
    direction_var.cell_methods = (CellMethod("variance", coords=("time",),
                                             comments=("circular: 1 - mean resultant length",)),)
    for cube in (speed_var, direction_var):
        cube.attributes.pop("STASH", None)  # the UM code of x_wind does not describe a derived field
        cube.attributes["source"] = "threadprobe run wind"
        cube.attributes["history"] = f"wind speed variance and wind_from_direction circular variance over time of {x_glob} and {y_glob}"
    return WindGraph(speed_var, direction_var, tuple(u_files + v_files))


def _first() -> Any:
    import iris.analysis

    return iris.analysis.MEAN  # only used for its collapsed coordinates: the data is replaced


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
    scheduler: str
    seconds: float
    compute_seconds: float


def run(x_glob: str, y_glob: str, out: Path, choice: Choice, quiet: bool = False,
        on_client: Callable[[Any], None] | None = None) -> RunResult:
    """The whole wind workload on ``choice``. ``on_client`` sees the distributed Client (tests)."""
    started = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _on_term)  # SIGTERM unwinds, so no temporary is left
    try:
        graph = build(x_glob, y_glob)
        with activated(choice) as client:
            if on_client is not None and client is not None:
                on_client(client)
            began = time.perf_counter()
            speed, direction = compute(graph.speed_variance.core_data(),
                                       graph.direction_circular_variance.core_data(), client=client, quiet=quiet)
            computed = time.perf_counter() - began
        results = [graph.speed_variance.copy(data=speed), graph.direction_circular_variance.copy(data=direction)]
        save_atomic(results, out)
    except _Terminated:
        raise SystemExit(143) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    return RunResult(out, choice.describe(), time.perf_counter() - started, computed)

