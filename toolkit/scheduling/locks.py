"""The locks a choice says the run must hold, as objects the chosen scheduler can hold.

A choice's ``locks`` are verified remedies (``records.Remedy``), of two kinds:

- **library locks**: one lock per process around every call into one library
  (``threadprobe.harness.libguard``, the very mechanism the diagnosis's workers verified). The
  threads scheduler installs it in this process for the run; a cluster's workers install it in
  theirs (``guarded_workers``).
- **a global lock** around every task. As in xarray's ``backends/locks.py``, its object depends
  on the scheduler (``records.LockMaker``, from the scheduler table): a ``SerializableLock`` for
  threads (one per process, picklable, so that the same name means the same lock wherever a task
  lands) and a ``distributed.Lock`` for a cluster. The threads scheduler gets a pool whose every
  task runs under it (``LockedPool``), a cluster's workers an executor that does the same
  (``locked_workers``).

No lock is needed where no two tasks of one process run at once (one thread per worker).
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeAlias

from threadprobe.harness import libguard
from threadprobe.records import Choice, LockMaker, RemedyKind

if TYPE_CHECKING:
    from dask.utils import SerializableLock
    from distributed.diagnostics.plugin import WorkerPlugin
    from distributed.lock import Lock as ClusterLock

    #: A global lock's object, as ``lock_for`` makes it for the scheduler's ``LockMaker``.
    GlobalLock: TypeAlias = SerializableLock | ClusterLock

_THREAD_LOCKS: dict[str, SerializableLock] = {}
GLOBAL_NAME = "threadprobe-global"


def needed(choice: Choice) -> bool:
    """Whether two tasks of one process can run at once under ``choice``."""
    return choice.threads_per_worker > 1 and choice.row.lock != LockMaker.NONE


def libraries(choice: Choice) -> tuple[str, ...]:
    """The libraries whose locks the run holds (none when no two tasks of a process meet)."""
    if not needed(choice):
        return ()
    return tuple(sorted({name for r in choice.locks if r.kind == RemedyKind.LIBRARY_LOCK for name in r.libraries}))


def lock_for(choice: Choice) -> GlobalLock | None:
    """The global lock's object for ``choice`` (None without a global lock, or where not needed)."""
    if not needed(choice) or not any(r.kind == RemedyKind.GLOBAL_LOCK for r in choice.locks):
        return None
    maker = choice.row.lock
    match maker:
        case LockMaker.PROCESS:
            from dask.utils import SerializableLock

            return _THREAD_LOCKS.setdefault(GLOBAL_NAME, SerializableLock(GLOBAL_NAME))
        case LockMaker.CLUSTER:
            from distributed import Lock

            return Lock(GLOBAL_NAME)
        case LockMaker.NONE:
            return None
        case _:
            typing.assert_never(maker)


@contextlib.contextmanager
def guarded(names: Sequence[str]) -> Iterator[None]:
    """The library locks of ``names`` installed in this process for the block."""
    done: list[str] = []
    try:
        for name in names:
            libguard.guard(name)
            done.append(name)
        libguard.only(done)
        yield
    finally:
        for name in done:
            libguard.release(name)


def only(choice: Choice) -> None:
    """Hold ``choice``'s library locks and no other's (a pilot times several choices in turn)."""
    libguard.only(libraries(choice))


def held(lock: GlobalLock | None, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a dask task: any arguments, any result) wrapped so that every call holds ``lock``
    (``fn`` itself when there is none)."""
    if lock is None:
        return fn

    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return fn(*args, **kwargs)

    locked.__wrapped__ = fn  # type: ignore[attr-defined]
    return locked


class LockedPool(ThreadPoolExecutor):
    """dask's threads scheduler on a pool whose every task holds ``lock`` (dask.config ``pool``)."""

    def __init__(self, workers: int, lock: GlobalLock) -> None:
        super().__init__(workers, thread_name_prefix="threadprobe-locked")
        self.lock = lock

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return super().submit(held(self.lock, fn), *args, **kwargs)


def locked_workers(lock: GlobalLock) -> WorkerPlugin:
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


def guarded_workers(names: Sequence[str]) -> WorkerPlugin:
    """A distributed worker plugin: each worker process holds the library locks around every call
    into those libraries, as the diagnosis's workers did."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class GuardedWorkers(WorkerPlugin):
        name = "threadprobe-library-locks"

        def setup(self, worker: Any) -> None:
            for name in names:
                libguard.guard(name)

        def teardown(self, worker: Any) -> None:
            for name in names:
                libguard.release(name)

    return GuardedWorkers()
