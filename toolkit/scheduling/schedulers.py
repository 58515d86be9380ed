"""Running dask work on a chosen scheduler, from a laptop to a SLURM cluster, holding its locks.

A ``Choice`` (threadprobe.records) says what to run on: ``synchronous``, ``threads``, ``processes``
(with its multiprocessing start method), or ``distributed`` on a LocalCluster, an existing
scheduler (``address``) or dask-jobqueue's SLURMCluster (``cluster="slurm"``, configured from
dask's config files), optionally adaptive. ``activated`` applies a Choice for a ``with`` block
and yields an ``Active`` whose ``compute`` runs collections there, holding the choice's locks,
with progress, and with a watchdog that ends a distributed run whose workers keep dying.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from threadprobe.records.errors import UsageError
from threadprobe.records import (SCHEDULERS, Auto, Choice, Cluster, Remedy, RemedyKind, Scheduler, StartMethod,
                                 scheduler_row)
from threadprobe.scheduling.locks import LockedPool, guarded, guarded_workers, libraries, lock_for, locked_workers

if TYPE_CHECKING:
    from distributed import Client

    from threadprobe.scheduling.locks import GlobalLock


def parse_adapt(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        low, high = (int(x) for x in text.split(":"))
    except ValueError:
        raise UsageError(f"--adapt expects MIN:MAX, got {text!r}") from None
    if low < 0 or high < max(1, low):
        raise UsageError(f"--adapt expects 0 <= MIN <= MAX and MAX >= 1, got {text!r}")
    return low, high


def parse_lock(text: str) -> Remedy:
    """``--lock``: a lock around every call into a package or module, or into one function
    (``module:function``), or ``global``; ``+`` joins targets that each get a lock of their own."""
    if text == "global":
        return Remedy(RemedyKind.GLOBAL_LOCK)
    targets = tuple(text.split("+"))
    if not all(part.isidentifier() for t in targets for part in t.replace(":", ".").split(".")):
        raise UsageError(f"--lock takes a package, a module or module:function (cf_units, "
                         f"iris.fileformats.pp_load_rules:_epoch_date_hours), or global; not {text!r}")
    return Remedy(RemedyKind.LIBRARY_LOCK, targets)


def parse_scheduler(text: str) -> Scheduler | Auto:
    """A scheduler asked for by name (the command line, ``threadprobe.scheduler("threads")``):
    ``auto`` or one of ``SCHEDULERS``."""
    for kind in (Auto, Scheduler):
        try:
            return kind(text)
        except ValueError:
            continue
    raise UsageError(f"unknown scheduler {text!r} ({', '.join([Auto.AUTO, *SCHEDULERS])})")


def check_options(scheduler: Scheduler | Auto, address: str | None, cluster: Cluster, adapt: str | None,
                  locks: tuple[Remedy, ...] = ()) -> None:
    """Contradictory scheduler options, as one-line usage errors (no I/O: check them first)."""
    threads = isinstance(scheduler, Scheduler) and scheduler_row(scheduler).shares_memory \
        and scheduler != Scheduler.SYNCHRONOUS
    if locks and not threads:
        raise UsageError("--lock needs --scheduler threads (auto holds the remedies the diagnosis verified)")
    if (address or cluster != Cluster.LOCAL or adapt) and scheduler not in (Auto.AUTO, Scheduler.DISTRIBUTED):
        raise UsageError("--address, --cluster and --adapt need --scheduler distributed")
    if address and cluster != Cluster.LOCAL:
        raise UsageError("choose --address or --cluster, not both")
    parse_adapt(adapt)


def explicit(workload: str, scheduler: Scheduler, workers: int | None = None, threads_per_worker: int | None = None,
             address: str | None = None, cluster: Cluster = Cluster.LOCAL, adapt: str | None = None) -> Choice:
    """The Choice the command-line options name (everything but ``auto``)."""
    check_options(scheduler, address, cluster, adapt)
    row = Choice(workload, scheduler).row
    n_workers, threads = row.shape(workers, threads_per_worker, os.cpu_count() or 1)
    remote = scheduler == Scheduler.DISTRIBUTED
    return Choice(workload, scheduler, n_workers, threads, context=row.context, address=address if remote else None,
                  cluster=cluster, adapt=parse_adapt(adapt) if remote else None)


def on_cluster(choice: Choice, address: str | None, cluster: Cluster, adapt: str | None) -> Choice:
    """A chosen worker shape, run where the user asked (an address, SLURM, adaptive)."""
    if not (address or cluster != Cluster.LOCAL or adapt):
        return choice
    return choice.replace(scheduler=Scheduler.DISTRIBUTED, address=address, cluster=cluster,
                          adapt=parse_adapt(adapt))


class WorkersLost(RuntimeError):
    """Every dask worker died and none came back: the computation cannot finish."""


@dataclass
class Active:
    """A scheduler in use: where ``compute`` runs, and the lock its tasks must hold."""

    choice: Choice
    client: Client | None = None  # a distributed scheduler's (None: a local one)
    lock: GlobalLock | None = None
    started: float = 0.0  # seconds it took to start (a cluster's start-up)
    # A local scheduler's dask config (several can be active at once): dask's own keys and values.
    settings: dict[str, Any] | None = None

    def compute(self, *collections: Any, on_done: Callable[[str], None] | None = None,
                worker_grace: float = 60.0) -> tuple[Any, ...]:
        """Compute collections once here. ``on_done(key)`` hears of every finished task. The
        collections are dask's (arrays, delayed...) and the results whatever they compute to."""
        import dask

        if self.client is None:
            with dask.config.set(self.settings or {}):
                if on_done is None:
                    return dask.compute(*collections)
                from dask.callbacks import Callback

                with Callback(posttask=lambda key, *_: on_done(str(key))):
                    return dask.compute(*collections)
        from dask.distributed import as_completed, wait

        futures = self.client.compute(list(collections))
        if on_done is not None:
            import threading

            def follow() -> None:
                for future in as_completed(futures):
                    on_done(str(future.key))

            threading.Thread(target=follow, name="threadprobe-follow", daemon=True).start()
        empty_since = None
        while True:
            try:
                wait(futures, timeout=2)
                break
            except TimeoutError:
                pass
            if self.client.scheduler_info().get("workers"):
                empty_since = None
                continue
            empty_since = empty_since or time.monotonic()
            if time.monotonic() - empty_since > worker_grace:
                import logging

                logging.getLogger("distributed.scheduler").setLevel(logging.CRITICAL)  # its cancel traceback is noise
                self.client.cancel(futures)
                raise WorkersLost(f"every dask worker died and none came back within {worker_grace:.0f}s: the tasks "
                                  "kill their workers (run `threadprobe diagnose` to see which operation is unsafe)")
        return tuple(self.client.gather(futures))


def dask_settings(choice: Choice) -> dict[str, Any]:
    """The dask configuration that makes dask itself run on ``choice`` (a plain ``cube.data``
    included): the local schedulers' keys, or the address a ``Client()`` connects to."""
    return choice.row.settings(choice)


def as_yaml(choice: Choice) -> str:
    """A dask config file (``~/.config/dask/threadprobe.yaml``): dask's own keys, and the whole
    choice under ``threadprobe`` for the record."""
    import yaml

    config = dict(dask_settings(choice))
    config["threadprobe"] = {"workload": choice.workload, "scheduler": str(choice.scheduler),
                             "n_workers": choice.n_workers, "threads_per_worker": choice.threads_per_worker,
                             "locks": [r.to_json() for r in choice.locks], "source": choice.source}
    head = [f"threadprobe choice ({choice.source})", *choice.rationale]
    if choice.scheduler == Scheduler.DISTRIBUTED and not choice.address:
        head.append(f"a script starts the cluster: Client(LocalCluster(n_workers={choice.n_workers}, "
                    f"threads_per_worker={choice.threads_per_worker})); with scheduler-address set, Client() connects")
    if choice.locks:
        head.append(f"the run must hold {'; '.join(r.describe() for r in choice.locks)}: use "
                    "threadprobe.scheduler(choice), which does")
    return "".join(f"# {line}\n" for line in head) + yaml.safe_dump(config, sort_keys=False)


def as_env(choice: Choice) -> str:
    """Shell exports in dask's own environment convention (DASK_ prefix, __ for nesting)."""
    lines = [f"# threadprobe choice ({choice.source})"]

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}__{key.upper().replace('-', '_')}" if prefix else key.upper().replace("-", "_"), inner)
        else:
            import shlex

            lines.append(f"export DASK_{prefix}={shlex.quote(str(value))}")

    walk("", dask_settings(choice))
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def activated(choice: Choice) -> Iterator[Active]:
    """Apply ``choice`` to dask inside the block, holding its locks; yields where to compute."""
    import dask

    lock = lock_for(choice)
    names = libraries(choice)
    if not choice.row.client:
        # Every local Active names its pool, None included: a pilot has several active at once,
        # and dask would otherwise run "threads" on the pool another one put in the config.
        settings = {**dask_settings(choice), "pool": None}
        pool = None
        if choice.row.shares_memory and lock is not None:
            pool = settings["pool"] = LockedPool(choice.threads_per_worker, lock)
        elif not choice.row.shares_memory:
            # One pool for the whole block: dask would otherwise start (and fork) a fresh pool on
            # every compute, which a pilot's many small computes would pay again and again.
            pool = settings["pool"] = process_pool(choice)
        try:
            with guarded(names), dask.config.set(settings):
                yield Active(choice, None, lock, settings=settings)
        finally:
            if pool is not None:
                pool.shutdown()
        return
    from dask.distributed import Client

    began = time.perf_counter()
    cluster = None
    try:
        if choice.address:
            client = Client(choice.address, timeout=dask.config.get("distributed.comm.timeouts.connect", "30s"))
        else:
            cluster = make_cluster(choice)
            client = Client(cluster)
    except OSError as exc:
        if cluster is not None:
            cluster.close()
        raise UsageError(f"cannot reach the dask scheduler at {choice.address}: {exc}") from None
    try:
        if cluster is not None and not choice.adapt:
            client.wait_for_workers(choice.n_workers, timeout=600)
        if lock is not None:
            client.register_plugin(locked_workers(lock))
        if names:
            client.register_plugin(guarded_workers(names))
        with dask.config.set(scheduler=client):
            yield Active(choice, client, lock, time.perf_counter() - began, {"scheduler": client})
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def process_pool(choice: Choice) -> Any:
    """The worker processes dask's processes scheduler would start, started once (lazily, at the
    first task, so that they inherit what the parent loaded by then)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from dask import multiprocessing as dask_mp

    if os.environ.get("PYTHONHASHSEED") in (None, "0"):
        os.environ["PYTHONHASHSEED"] = "6640"  # as dask does: consistent hashing in the workers
    setup = getattr(dask_mp, "initialize_worker_process", None)  # dask's per-worker reseeding
    start = str(choice.context or StartMethod.SPAWN)
    return ProcessPoolExecutor(choice.n_workers, mp_context=multiprocessing.get_context(start),
                               initializer=partial(setup, user_initializer=None) if setup else None)


def make_cluster(choice: Choice) -> Any:
    cluster: Any  # a SLURMCluster or a LocalCluster: dask's own types, no common base declared
    if choice.cluster == Cluster.SLURM:
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise UsageError("--cluster slurm needs dask-jobqueue (pip install dask-jobqueue)") from None
        # Everything else (queue, account, memory, walltime, interface) comes from dask's config
        # files (jobqueue.slurm.*), as dask-jobqueue documents; the python is this one.
        cluster = SLURMCluster(processes=1, cores=choice.threads_per_worker, python=sys.executable)
    else:
        from dask.distributed import LocalCluster

        cluster = LocalCluster(n_workers=0 if choice.adapt else choice.n_workers,
                               threads_per_worker=choice.threads_per_worker, processes=True,
                               dashboard_address=None)
    if choice.adapt:
        cluster.adapt(minimum=choice.adapt[0], maximum=choice.adapt[1])
    elif choice.cluster == Cluster.SLURM:
        cluster.scale(jobs=choice.n_workers)
    return cluster
