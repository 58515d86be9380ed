"""Locks that are applied: the global lock made per scheduler, held around every call; library
locks installed for a block and held around every call into that library."""

from __future__ import annotations

import threading
import time

from threadprobe.records import Choice, Remedy, RemedyKind
from threadprobe.scheduling import locks

GLOBAL = Remedy(RemedyKind.GLOBAL_LOCK)
CF = Remedy(RemedyKind.LIBRARY_LOCK, ("cf_units",))


def test_no_lock_where_no_two_tasks_of_a_process_run_at_once():
    assert locks.lock_for(Choice("w", "threads", 1, 2)) is None
    assert locks.lock_for(Choice("w", "synchronous", locks=(GLOBAL,))) is None
    assert locks.lock_for(Choice("w", "processes", 2, 1, locks=(GLOBAL,))) is None
    assert locks.libraries(Choice("w", "processes", 2, 1, locks=(CF,))) == ()
    assert locks.libraries(Choice("w", "threads", 1, 2, locks=(CF, GLOBAL))) == ("cf_units",)
    same = locks.lock_for(Choice("w", "threads", 1, 2, locks=(GLOBAL,)))
    assert same is locks.lock_for(Choice("w", "threads", 1, 4, locks=(GLOBAL,)))  # one lock, by name


def test_a_held_function_never_runs_twice_at_once():
    lock = locks.lock_for(Choice("w", "threads", 1, 2, locks=(GLOBAL,)))
    inside, most = [0], [0]
    guard = threading.Lock()

    def work() -> None:
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.01)
        with guard:
            inside[0] -= 1

    wrapped = locks.held(lock, work)
    threads = [threading.Thread(target=wrapped) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1 and wrapped.__wrapped__ is work
    assert locks.held(None, work) is work


_GUARD = threading.Lock()
_INSIDE = [0, 0]  # tasks inside now, most at once


def _occupy(_: int) -> int:
    """A task that records how many of its kind run at once (module-level: distributed pickles it)."""
    with _GUARD:
        _INSIDE[0] += 1
        _INSIDE[1] = max(_INSIDE[1], _INSIDE[0])
    time.sleep(0.02)
    with _GUARD:
        _INSIDE[0] -= 1
    return 1


def test_distributed_workers_run_every_task_under_the_lock():
    """distributed accepts the plugin (it refuses any that does not inherit its WorkerPlugin), and
    a worker of four threads then runs its tasks one at a time."""
    from distributed import Client, LocalCluster

    lock = locks.lock_for(Choice("w", "threads", 1, 2, locks=(GLOBAL,)))  # in-process workers: a thread lock serves
    _INSIDE[:] = [0, 0]
    with LocalCluster(n_workers=1, threads_per_worker=4, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.register_plugin(locks.locked_workers(lock))
        assert sum(client.gather(client.map(_occupy, range(16), pure=False))) == 16
    assert _INSIDE[1] == 1
def test_a_choice_holding_a_library_lock_serialises_that_library_and_nothing_else(monkeypatch):
    """Tasks overlap outside the library, never inside it, for any dask code in the block; after
    the block the library is its own again."""
    import sys
    import types

    import dask

    from threadprobe.harness import libguard
    from threadprobe.scheduling import schedulers

    from tests.harness.test_libguard import occupy

    inside, outside = {"now": 0, "most": 0}, {"now": 0, "most": 0}

    def busy(where: dict[str, int]) -> None:
        occupy(where, 0.01)

    lib = types.ModuleType("plantedlib")

    def call(k: int) -> int:
        busy(inside)
        return k

    call.__module__ = "plantedlib"
    lib.call = call
    monkeypatch.setitem(sys.modules, "plantedlib", lib)

    def task(k: int) -> int:
        busy(outside)
        return sys.modules["plantedlib"].call(k)

    choice = Choice("w", "threads", 1, 4, locks=(Remedy(RemedyKind.LIBRARY_LOCK, ("plantedlib",)),))
    try:
        with schedulers.activated(choice):
            assert dask.compute(*[dask.delayed(task)(k) for k in range(16)]) == tuple(range(16))
        assert inside["most"] == 1 and outside["most"] > 1
        inside["most"] = 0
        dask.compute(*[dask.delayed(task)(k) for k in range(16)], scheduler="threads", num_workers=4)
        assert inside["most"] > 1  # after the block, the library's calls run unlocked again
    finally:
        libguard.remove("plantedlib")
    assert lib.call is call
