"""The loading experiment: metadata-only iris.load of many files, in parallel, merged into one CubeList.

Each file is loaded by one task (``iris.load`` reads headers and builds lazy data, it reads no
values), on whichever scheduler is active, and the cubes are joined along time. This is the
study's first experiment; under threads it runs ``iris.load`` calls concurrently, which the
diagnosis finds unsafe on this stack, so ``auto`` picks separate processes.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

from toolkit.errors import UsageError
from toolkit.runner.schedulers import Choice, activated, compute
from toolkit.runner.wind import expand


def load_one(path: str) -> Any:
    """One file's cubes, data left lazy. Runs in whatever worker the scheduler chose."""
    import iris

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return iris.load(path)
        except Exception as exc:
            raise UsageError(f"cannot read {path}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from None


def estimate_serial_seconds(pattern: str) -> float:
    """The run's serial duration, from loading the first file once (the recommendation weighs a
    short run's work against a process pool's start-up)."""
    paths = expand(pattern, "--files")
    load_one(str(paths[0]))  # the first call pays Iris's own lazy imports: not per-file work
    started = time.perf_counter()
    load_one(str(paths[0]))
    return (time.perf_counter() - started) * len(paths)


@dataclass(frozen=True)
class LoadResult:
    files: int
    cubes: int
    summary: tuple[str, ...]
    scheduler: str
    seconds: float


def run(pattern: str, choice: Choice, quiet: bool = False) -> LoadResult:
    import dask
    from iris.cube import CubeList

    paths = expand(pattern, "--files")
    started = time.perf_counter()
    tasks = [dask.delayed(load_one, pure=True)(str(p)) for p in paths]
    with activated(choice) as client:
        loaded = compute(*tasks, client=client, quiet=quiet)
    cubes = CubeList(cube for cubelist in loaded for cube in cubelist)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged = cubes.concatenate().merge()
    lazy = all(c.has_lazy_data() for c in merged)
    summary = tuple(c.summary(shorten=True) for c in merged) + (("data still lazy",) if lazy else ())
    return LoadResult(len(paths), len(merged), summary, choice.describe(), time.perf_counter() - started)
