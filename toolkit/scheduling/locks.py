"""Locks a choice says the run must hold, as objects the chosen scheduler can hold.

A lock spec is a name such as ``global:netCDF4`` ("one process-wide lock around every task that
touches netCDF4"). As in xarray's ``backends/locks.py``, the object depends on the scheduler:
a ``SerializableLock`` for threads (one per process, and picklable, so that the same name
means the same lock wherever a task lands) and a ``distributed.Lock`` for a cluster. Serial
schedulers, and process schedulers with one thread per worker, need none.

Holding a lock around *every* task is what the verified remedy measured, so that is what
``held`` does: the runner's own tasks take the lock, and for any other dask computation the
threads scheduler gets a pool whose every task runs under it (``LockedPool``), and a cluster's
workers get an executor that does the same (``locked_workers``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed.diagnostics.plugin import WorkerPlugin

_THREAD_LOCKS: dict[str, Any] = {}


def lock_for(specs: Sequence[str], scheduler: str, threads_per_worker: int = 1) -> Any | None:
    """One lock object standing for every spec (they are all global locks), or None when the
    scheduler runs no two tasks of a process at once."""
    if not specs:
        return None
    name = "threadprobe-" + "+".join(sorted(s.split(":", 1)[-1] for s in specs))
    if scheduler == "threads":
        from dask.utils import SerializableLock

        return _THREAD_LOCKS.setdefault(name, SerializableLock(name))
    if scheduler == "distributed" and threads_per_worker > 1:
        from distributed import Lock

        return Lock(name)
    return None


def held(lock: Any | None, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` wrapped so that every call holds ``lock`` (``fn`` itself when there is none)."""
    if lock is None:
        return fn

    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return fn(*args, **kwargs)

    locked.__wrapped__ = fn  # type: ignore[attr-defined]
    return locked


class LockedPool(ThreadPoolExecutor):
    """dask's threads scheduler on a pool whose every task holds ``lock`` (dask.config ``pool``)."""

    def __init__(self, workers: int, lock: Any) -> None:
        super().__init__(workers, thread_name_prefix="threadprobe-locked")
        self.lock = lock

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return super().submit(held(self.lock, fn), *args, **kwargs)


def locked_workers(lock: Any) -> WorkerPlugin:
    """A distributed worker plugin: each worker's default executor runs every task under the lock.
    (distributed refuses plugins that do not inherit its base class, which costs a second to
    import: hence the class is made here, when a distributed run needs it.)"""
    from distributed.diagnostics.plugin import WorkerPlugin

    class LockedWorkers(WorkerPlugin):
        name = "threadprobe-locks"

        def setup(self, worker: Any) -> None:
            inner = worker.executors["default"]

            class Locked:
                def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
                    return inner.submit(held(lock, fn), *args, **kwargs)

                def __getattr__(self, name: str) -> Any:
                    return getattr(inner, name)

            worker.executors["default"] = Locked()

    return LockedWorkers()


@contextlib.contextmanager
def holding(lock: Any | None) -> Iterator[None]:
    if lock is None:
        yield
    else:
        with lock:
            yield
