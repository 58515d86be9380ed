"""Locks that are applied: one named lock per set of global locks, held around every call."""

from __future__ import annotations

import threading
import time

from threadprobe.scheduling import locks


def test_no_lock_where_no_two_tasks_of_a_process_run_at_once():
    assert locks.lock_for([], "threads") is None
    assert locks.lock_for(["global:netCDF4"], "synchronous") is None
    assert locks.lock_for(["global:netCDF4"], "processes") is None
    same = locks.lock_for(["global:netCDF4", "global:h5py"], "threads")
    assert same is locks.lock_for(["global:h5py", "global:netCDF4"], "threads")  # one lock per set, by name


def test_a_held_function_never_runs_twice_at_once():
    lock = locks.lock_for(["global:planted"], "threads")
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

    lock = locks.lock_for(["global:planted"], "threads")  # in-process workers: a thread lock serves
    _INSIDE[:] = [0, 0]
    with LocalCluster(n_workers=1, threads_per_worker=4, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.register_plugin(locks.locked_workers(lock))
        assert sum(client.gather(client.map(_occupy, range(16), pure=False))) == 16
    assert _INSIDE[1] == 1
