"""The loading experiment: metadata-only iris.load of many files, in parallel, merged into one CubeList.

Each file is a unit: one task loads it (``iris.load`` reads headers and builds lazy data, it
reads no values), on whichever scheduler is active, and the cubes are joined along time at the
end. This is the study's first experiment; under threads it runs ``iris.load`` calls
concurrently, which the diagnosis finds unsafe on this stack, so threads are never a candidate.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any  # Any: Iris's cubes (Iris ships no types)

from threadprobe.records.errors import UsageError, one_line
from threadprobe.records import Choice, Scheduler
from threadprobe.scheduling import cache
from threadprobe.scheduling.pilot import Decider, Pilot
from threadprobe.scheduling.schedulers import Active
from threadprobe.diagnosis.progress import NullProgress, Progress, phase
from threadprobe.scheduling.runs.display import Tasks
from threadprobe.scheduling.runs.wind import expand


class UnreadableFile(UsageError):
    """``iris.load`` failed on a file: bad input, unless the file reads fine alone (``blame``)."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"cannot read {path}: {why}")
        self.path, self.why = path, why

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # raised in a worker process, re-raised here
        return UnreadableFile, (self.path, self.why)


def load_one(path: str) -> Any:
    """One file's cubes, data left lazy. Runs in whatever worker the scheduler chose."""
    import iris

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return iris.load(path)
        except Exception as exc:
            raise UnreadableFile(path, f"{type(exc).__name__}: {one_line(exc)}") from None


def blame(failed: UnreadableFile, choice: Choice) -> UsageError:
    """What to tell of a load that failed on a file: the file's fault if it fails alone too, else
    the scheduler's (a race on this input that the diagnosis did not see), said as such."""
    if choice.scheduler == Scheduler.SYNCHRONOUS:
        return failed
    try:
        load_one(failed.path)
    except UnreadableFile:
        return failed
    return UsageError(f"{choice.describe()} failed on {failed.path} ({failed.why}), which reads fine alone: that "
                      "scheduler is not safe for this load here; run again with --scheduler synchronous or processes")


class LoadJob:
    """One unit per file; computed units keep their cubes."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = [str(p) for p in paths]
        self.units = len(self.paths)
        self.loaded: dict[int, Any] = {}

    def signature(self, fmt: str | None) -> dict[str, Any]:
        """This input's shape of work, for the choice cache: its format and how many files."""
        return cache.signature(fmt, [], self.units)

    def run(self, active: Active, units: Sequence[int], tasks: int,
            on_done: Callable[[str], None] | None = None) -> None:
        import dask

        # The scheduler's pool (or a cluster's workers) holds a global lock around every task:
        # taking it here too would wait for itself.
        delayed = [dask.delayed(load_one, pure=False, name=f"threadprobe-load-{k}")(self.paths[k]) for k in units]
        for k, cubes in zip(units, active.compute(*delayed, on_done=on_done)):
            self.loaded[k] = cubes


@dataclass(frozen=True)
class LoadResult:
    files: int
    cubes: int
    summary: tuple[str, ...]
    choice: Choice
    seconds: float
    pilot: Pilot | None = None


def check(paths: Sequence[Path]) -> None:
    """Bad input first: an empty file is refused before any scheduler is chosen."""
    for path in paths:
        if path.stat().st_size == 0:
            raise UsageError(f"cannot read {path}: the file is empty")


def merge(job: LoadJob, pattern: str) -> Any:
    """The loaded cubes joined along time, or one line naming the files that hold the same field
    at the same time (Iris cannot merge those: ``DuplicateDataError``)."""
    from iris.cube import CubeList
    from iris.exceptions import DuplicateDataError

    cubes = CubeList(cube for k in sorted(job.loaded) for cube in job.loaded[k])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cubes.concatenate().merge()
    except DuplicateDataError as exc:
        files = duplicated_files(job)
        named = ", ".join(files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
        raise UsageError(f"cannot merge the {job.units} files of --files {pattern}: {one_line(exc, None)}; "
                         f"files holding the same field at the same time: {named or 'unknown'}") from None


def duplicated_files(job: LoadJob) -> list[str]:
    """Files holding a field (its name, at its times) that another file holds too."""
    holders: dict[tuple[str, bytes], list[str]] = {}
    for k, cubes in sorted(job.loaded.items()):
        for cube in cubes:
            times = cube.coords("time")
            holders.setdefault((cube.name(), times[0].points.tobytes() if times else b""), []).append(job.paths[k])
    return sorted({path for paths in holders.values() if len(paths) > 1 for path in paths})


def run(pattern: str, decider: Decider, progress: Progress | None = None) -> LoadResult:
    paths = expand(pattern, "--files")
    check(paths)
    started = time.perf_counter()
    job = LoadJob(paths)
    with ExitStack() as stack:
        choice, active, pilot = decider(job, stack)
        rest = [k for k in range(job.units) if k not in set(pilot.done if pilot else ())]
        if rest:
            with phase(progress or NullProgress(), "load") as shown:
                try:
                    job.run(active, rest, len(rest), on_done=Tasks(shown, "iris.load", len(rest)).done)
                except UnreadableFile as exc:
                    raise blame(exc, choice) from None
    merged = merge(job, pattern)
    lazy = all(c.has_lazy_data() for c in merged)
    summary = tuple(c.summary(shorten=True) for c in merged) + (("data still lazy",) if lazy else ())
    return LoadResult(len(paths), len(merged), summary, choice, time.perf_counter() - started, pilot)
